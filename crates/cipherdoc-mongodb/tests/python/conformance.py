"""The official stack's side of the MongoDB engine's command conformance
test (crates/cipherdoc-mongodb/tests/conformance.rs): pymongo with
pymongocrypt (libmongocrypt) performs, through the recording proxy the Rust
test puts in front of `cipherdoc serve`, the operations the engine performs
afterwards, so that the two streams of commands can be compared.

Environment (set by the Rust test):
  CONF_URI         the proxy's mongodb:// URI
  CONF_DB          the database
  CONF_MASTER_KEY  the 96-byte local master key, hex
Prints the equality field's and the range field's data key ids (hex).
"""

import os

from bson.binary import STANDARD
from bson.codec_options import CodecOptions
from pymongo import MongoClient
from pymongo.encryption import Algorithm, ClientEncryption, QueryType, RangeOpts
from pymongo.encryption_options import AutoEncryptionOpts

URI = os.environ["CONF_URI"]
DB = os.environ["CONF_DB"]
KMS = {"local": {"key": bytes.fromhex(os.environ["CONF_MASTER_KEY"])}}
KV = DB + ".__keyVault"
OPTS = CodecOptions(uuid_representation=STANDARD)
SSN = "123-45-6789"


def main():
    plain = MongoClient(URI, uuidRepresentation="standard", serverSelectionTimeoutMS=10000)
    plain[DB]["__keyVault"].create_index(
        "keyAltNames", unique=True, partialFilterExpression={"keyAltNames": {"$exists": True}}
    )
    ce = ClientEncryption(KMS, KV, plain, OPTS)
    key_id = ce.create_data_key("local", key_alt_names=["conformance.ssn"])
    fields = {"fields": [
        {"path": "ssn", "bsonType": "string", "keyId": key_id,
         "queries": {"queryType": "equality", "contention": 0}},
    ]}
    auto = MongoClient(
        URI, uuidRepresentation="standard", serverSelectionTimeoutMS=10000,
        auto_encryption_opts=AutoEncryptionOpts(KMS, KV, bypass_query_analysis=True),
    )
    db = auto[DB]
    # create and drop of an encrypted collection, as drivers do them.
    ce.create_encrypted_collection(plain[DB], "created", fields, "local")
    db.drop_collection("created")
    ce.create_encrypted_collection(plain[DB], "c", fields, "local")

    def insert_payload():
        return ce.encrypt(SSN, Algorithm.INDEXED, key_id=key_id, contention_factor=0)

    find = ce.encrypt(SSN, Algorithm.INDEXED, key_id=key_id,
                      query_type=QueryType.EQUALITY, contention_factor=0)
    c = db["c"]
    c.insert_one({"_id": 1, "ssn": insert_payload()})
    found = list(c.find({"ssn": {"$eq": find}}))
    assert [d["_id"] for d in found] == [1], found
    n = db.command("count", "c", query={"ssn": {"$eq": find}})["n"]
    assert n == 1, n
    c.replace_one({"_id": 1}, {"ssn": insert_payload()})
    # The filter as the engine spells every equality: {path: {$eq: v}}.
    c.delete_one({"_id": {"$eq": 1}})
    db.command("compactStructuredEncryptionData", "c")
    db.command("cleanupStructuredEncryptionData", "c")

    # findAndModify and aggregate, on a collection of their own.
    ce.create_encrypted_collection(plain[DB], "m", fields, "local")
    m = db["m"]
    m.insert_one({"_id": 1, "ssn": insert_payload()})
    before = m.find_one_and_replace({"_id": {"$eq": 1}}, {"ssn": insert_payload()})
    assert before["ssn"] == SSN, before
    got = list(m.aggregate([{"$match": {"ssn": {"$eq": find}}}]))
    assert [d["_id"] for d in got] == [1], got

    # A range field: insert and a two-sided range query (the first range
    # expression of this process: payloadId 0).
    range_key = ce.create_data_key("local", key_alt_names=["conformance.v"])
    opts = RangeOpts(min=0, max=1000, sparsity=2, trim_factor=1)
    ce.create_encrypted_collection(plain[DB], "r", {"fields": [
        {"path": "v", "bsonType": "int", "keyId": range_key,
         "queries": {"queryType": "range", "contention": 0, "sparsity": 2, "trimFactor": 1,
                     "min": 0, "max": 1000}},
    ]}, "local")
    r = db["r"]
    r.insert_one({"_id": 1, "v": ce.encrypt(250, Algorithm.RANGE, key_id=range_key,
                                            contention_factor=0, range_opts=opts)})
    expr = ce.encrypt_expression({"$and": [{"v": {"$gte": 200}}, {"v": {"$lt": 300}}]},
                                 Algorithm.RANGE, key_id=range_key, query_type=QueryType.RANGE,
                                 contention_factor=0, range_opts=opts)
    got = list(r.find(expr))
    assert [d["_id"] for d in got] == [1] and got[0]["v"] == 250, got
    print(key_id.hex(), range_key.hex())
    ce.close()
    auto.close()
    plain.close()


main()
