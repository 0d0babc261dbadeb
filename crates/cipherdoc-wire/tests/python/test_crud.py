"""Plain MongoDB commands through `cipherdoc serve` with pymongo: CRUD,
update operators, findAndModify, cursors, aggregation, indexes,
transactions, and the error codes drivers act on."""

import unittest

from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

import common


class CrudSuite(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = common.client()
        cls.dbname = common.db_name("crud")
        cls.client.drop_database(cls.dbname)
        cls.db = cls.client[cls.dbname]

    @classmethod
    def tearDownClass(cls):
        cls.client.drop_database(cls.dbname)
        cls.client.close()

    def test_insert_find_sort_skip_limit_projection_and_cursors(self):
        c = self.db.items
        c.drop()
        c.insert_many([{"_id": i, "n": i % 7, "tags": ["t%d" % (i % 3)], "sub": {"v": i}} for i in range(250)])
        docs = list(c.find({"n": {"$gte": 3}}, {"n": 1}).sort([("n", -1), ("_id", 1)]).skip(5).limit(120).batch_size(17))
        want = sorted(({"_id": i, "n": i % 7} for i in range(250) if i % 7 >= 3),
                      key=lambda d: (-d["n"], d["_id"]))[5:125]
        self.assertEqual(docs, want)
        # More than the default first batch: getMore serves the rest.
        self.assertEqual(len(list(c.find())), 250)
        self.assertEqual(len(list(c.find({"tags": "t1"}))), len([i for i in range(250) if i % 3 == 1]))
        self.assertEqual(c.find_one({"sub.v": 42})["_id"], 42)
        self.assertEqual(c.count_documents({"n": 0}), len([i for i in range(250) if i % 7 == 0]))
        self.assertEqual(c.estimated_document_count(), 250)
        self.assertEqual(sorted(c.distinct("n")), list(range(7)))
        self.assertEqual(sorted(c.distinct("tags")), ["t0", "t1", "t2"])

    def test_update_operators_upsert_and_replace(self):
        c = self.db.upd
        c.drop()
        c.insert_one({"_id": 1, "a": 1, "arr": [1, 2], "s": {"x": 1}})
        r = c.update_one({"_id": 1}, {"$set": {"s.y": 2}, "$inc": {"a": 5}, "$push": {"arr": 3},
                                      "$unset": {"s.x": ""}})
        self.assertEqual((r.matched_count, r.modified_count), (1, 1))
        self.assertEqual(c.find_one({"_id": 1}), {"_id": 1, "a": 6, "arr": [1, 2, 3], "s": {"y": 2}})
        r = c.update_one({"_id": 1}, {"$set": {"a": 6}})
        self.assertEqual((r.matched_count, r.modified_count), (1, 0))
        r = c.update_one({"_id": 2, "k": "v"}, {"$set": {"z": 1}, "$setOnInsert": {"new": True}}, upsert=True)
        self.assertEqual(r.upserted_id, 2)
        self.assertEqual(c.find_one({"_id": 2}), {"_id": 2, "k": "v", "z": 1, "new": True})
        c.insert_many([{"_id": 10 + i, "g": "m"} for i in range(5)])
        r = c.update_many({"g": "m"}, {"$set": {"seen": True}})
        self.assertEqual(r.modified_count, 5)
        c.replace_one({"_id": 10}, {"only": "this"})
        self.assertEqual(c.find_one({"_id": 10}), {"_id": 10, "only": "this"})
        with self.assertRaises(OperationFailure) as ctx:
            c.update_one({"_id": 1}, {"$set": {"_id": 9}})
        self.assertEqual(ctx.exception.code, 66)
        self.assertEqual(c.delete_many({"g": "m"}).deleted_count, 4)
        self.assertEqual(c.delete_one({"_id": 2}).deleted_count, 1)

    def test_find_and_modify(self):
        c = self.db.fam
        c.drop()
        c.insert_many([{"_id": i, "q": i} for i in range(5)])
        before = c.find_one_and_update({"q": {"$gte": 2}}, {"$inc": {"q": 100}}, sort=[("q", -1)])
        self.assertEqual(before, {"_id": 4, "q": 4})
        after = c.find_one_and_update({"_id": 3}, {"$inc": {"q": 1}}, return_document=ReturnDocument.AFTER,
                                      projection={"_id": 0})
        self.assertEqual(after, {"q": 4})
        gone = c.find_one_and_delete({"_id": 0})
        self.assertEqual(gone, {"_id": 0, "q": 0})
        self.assertIsNone(c.find_one({"_id": 0}))
        made = c.find_one_and_replace({"_id": 77}, {"r": 1}, upsert=True, return_document=ReturnDocument.AFTER)
        self.assertEqual(made, {"_id": 77, "r": 1})

    def test_aggregate(self):
        c = self.db.agg
        c.drop()
        c.insert_many([{"_id": i, "k": "ab"[i % 2], "v": i} for i in range(10)])
        got = list(c.aggregate([
            {"$match": {"v": {"$gte": 2}}},
            {"$group": {"_id": "$k", "total": {"$sum": "$v"}, "n": {"$sum": 1}}},
            {"$sort": {"_id": 1}},
        ]))
        self.assertEqual(got, [{"_id": "a", "total": 2 + 4 + 6 + 8, "n": 4}, {"_id": "b", "total": 3 + 5 + 7 + 9, "n": 4}])
        got = list(c.aggregate([{"$sort": {"v": -1}}, {"$skip": 1}, {"$limit": 3}, {"$project": {"v": 1, "_id": 0}}]))
        self.assertEqual(got, [{"v": 8}, {"v": 7}, {"v": 6}])
        self.assertEqual(list(c.aggregate([{"$match": {"k": "a"}}, {"$count": "n"}])), [{"n": 5}])
        with self.assertRaises(OperationFailure):
            list(c.aggregate([{"$lookup": {"from": "x", "as": "y", "localField": "a", "foreignField": "b"}}]))

    def test_indexes_and_error_codes(self):
        c = self.db.idx
        c.drop()
        c.create_index("email", unique=True)
        c.insert_one({"email": "a@x"})
        with self.assertRaises(DuplicateKeyError) as ctx:
            c.insert_one({"email": "a@x"})
        self.assertEqual(ctx.exception.code, 11000)
        # An ordered batch stops at the first duplicate; what came before stays.
        with self.assertRaises(BulkWriteError) as ctx:
            c.insert_many([{"email": "b@x"}, {"email": "a@x"}, {"email": "c@x"}], ordered=True)
        self.assertEqual(ctx.exception.details["nInserted"], 1)
        self.assertEqual(ctx.exception.details["writeErrors"][0]["index"], 1)
        self.assertEqual(sorted(d["email"] for d in c.find()), ["a@x", "b@x"])
        self.assertIn("email_1", [i["name"] for i in c.list_indexes()])
        with self.assertRaises(OperationFailure) as ctx:
            self.db.command("create", "idx")
        self.assertEqual(ctx.exception.code, 48)
        with self.assertRaises(OperationFailure) as ctx:
            self.db.command("noSuchCommand", 1)
        self.assertEqual(ctx.exception.code, 59)
        with self.assertRaises(OperationFailure) as ctx:
            list(c.find({"a": {"$where": "1"}}))
        self.assertEqual(ctx.exception.code, 2)
        self.assertIn("idx", self.db.list_collection_names())
        c.drop()
        self.assertNotIn("idx", self.db.list_collection_names())

    def test_transactions_commit_abort_and_no_such_transaction(self):
        c = self.db.txn
        c.drop()
        c.insert_one({"_id": "seed"})
        with self.client.start_session() as s:
            with s.start_transaction():
                c.insert_one({"_id": 1}, session=s)
                c.insert_one({"_id": 2}, session=s)
                c.update_one({"_id": "seed"}, {"$set": {"in": "txn"}}, session=s)
        self.assertEqual(c.count_documents({}), 3)
        with self.client.start_session() as s:
            s.start_transaction()
            c.insert_one({"_id": 3}, session=s)
            c.insert_one({"_id": 4}, session=s)
            s.abort_transaction()
        self.assertEqual(sorted(d["_id"] for d in c.find({"_id": {"$in": [3, 4]}})), [])
        # A failed command aborts the transaction; later commands of it get
        # NoSuchTransaction labelled TransientTransactionError.
        with self.client.start_session() as s:
            s.start_transaction()
            c.insert_one({"_id": 5}, session=s)
            with self.assertRaises(DuplicateKeyError):
                c.insert_one({"_id": 1}, session=s)
            with self.assertRaises(OperationFailure) as ctx:
                c.insert_one({"_id": 6}, session=s)
            self.assertEqual(ctx.exception.code, 251)
            self.assertTrue(ctx.exception.has_error_label("TransientTransactionError"))
            s.abort_transaction()
        self.assertEqual(c.count_documents({"_id": {"$in": [5, 6]}}), 0)


if __name__ == "__main__":
    unittest.main()
