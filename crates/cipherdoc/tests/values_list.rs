//! `QuerySet::values_list(&field)`: one typed field of every match,
//! decrypted.

// Test code: failing loudly is its job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use cipherdoc::bson::oid::ObjectId;
use cipherdoc::model::{Model as _, ModelError};
use cipherdoc::testing::TestApp;
use cipherdoc::{Error, Model};

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
struct Account {
    id: ObjectId,
    owner: String,
    #[encrypted(queries = "equality")]
    iban: String,
    #[encrypted(queries = "range", min = 0, max = 1_000_000)]
    balance: i64,
    nickname: Option<String>,
}

#[tokio::test]
async fn values_list_returns_each_field_decrypted_with_its_type() {
    let app = TestApp::reference()
        .register::<Account>()
        .migrated()
        .await
        .unwrap();
    let accounts = app.objects::<Account>();
    for (owner, iban, balance, nickname) in [
        ("ada", "DE00 1111", 10, Some("savings")),
        ("bob", "DE00 2222", 20, None),
        ("cy", "DE00 3333", 30, Some("travel")),
    ] {
        accounts
            .create(Account {
                id: ObjectId::new(),
                owner: owner.into(),
                iban: iban.into(),
                balance,
                nickname: nickname.map(Into::into),
            })
            .await
            .unwrap();
    }
    let f = Account::fields();
    let ordered = accounts.order_by(f.owner.asc());
    let ibans: Vec<String> = ordered.values_list(&f.iban).await.unwrap();
    assert_eq!(ibans, ["DE00 1111", "DE00 2222", "DE00 3333"]);
    let balances: Vec<i64> = ordered
        .filter(f.balance.gte(20))
        .values_list(&f.balance)
        .await
        .unwrap();
    assert_eq!(balances, [20, 30]);
    let nicknames: Vec<Option<String>> = ordered.values_list(&f.nickname).await.unwrap();
    assert_eq!(
        nicknames,
        [Some("savings".to_owned()), None, Some("travel".to_owned())]
    );
    let owners = accounts
        .filter(f.iban.eq("DE00 2222"))
        .values_list(&f.owner)
        .await
        .unwrap();
    assert_eq!(owners, ["bob"]);
}

#[tokio::test]
async fn a_stored_value_of_the_wrong_type_names_model_and_field() {
    let app = TestApp::reference()
        .register::<Account>()
        .migrated()
        .await
        .unwrap();
    // A document written around the model: `owner` is a number.
    let db = app.database("encrypted").unwrap();
    db.engine()
        .insert_one(
            &Account::schema().collection,
            cipherdoc::bson::doc! { "_id": ObjectId::new(), "owner": 7_i32 },
        )
        .await
        .unwrap();
    let err = app
        .objects::<Account>()
        .values_list(&Account::fields().owner)
        .await
        .unwrap_err();
    let Error::Model(ModelError::Value { model, path, .. }) = &err else {
        panic!("expected ModelError::Value, got {err:?}");
    };
    assert_eq!(model, &Account::schema().label());
    assert_eq!(path, "owner");
}
