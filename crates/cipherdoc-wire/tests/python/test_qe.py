"""Queryable Encryption through `cipherdoc serve` with pymongo and
pymongocrypt (libmongocrypt), unmodified: explicit encryption, insert
through an auto-encrypting client with bypass_query_analysis, explicit query
payloads, compaction and cleanup, transactions, concurrency, and the
server's refusals."""

import base64
import datetime
import threading
import unittest
import uuid

from bson.binary import Binary, UUID_SUBTYPE
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from pymongo.encryption import Algorithm, QueryType, RangeOpts
from pymongo.encryption_options import AutoEncryptionOpts
from pymongo.errors import OperationFailure, PyMongoError

import common

EQ = Algorithm.INDEXED
UN = Algorithm.UNINDEXED
RANGE = Algorithm.RANGE

PEOPLE_FIELDS = [
    {"path": "eq0", "bsonType": "string", "keyId": None, "queries": {"queryType": "equality", "contention": 0}},
    {"path": "eq8", "bsonType": "string", "keyId": None, "queries": {"queryType": "equality", "contention": 8}},
    {"path": "un", "bsonType": "string", "keyId": None},
]

DAY = datetime.timedelta(days=1)
D0 = datetime.datetime(2024, 1, 1)

# Range fields of every type the issue names, with the options the client
# and the server must agree on.
RANGES = {
    "ri": ("int", RangeOpts(min=0, max=1000, sparsity=2, trim_factor=2), [0, 7, 100, 101, 640, 999]),
    "rl": ("long", RangeOpts(min=Int64(0), max=Int64(1_000_000), sparsity=2, trim_factor=2),
           [Int64(v) for v in [1, 15, 5000, 70_000, 70_001, 999_999]]),
    "rd": ("date", RangeOpts(min=D0, max=D0 + 365 * DAY, sparsity=2, trim_factor=2),
           [D0, D0 + DAY, D0 + 30 * DAY, D0 + 31 * DAY, D0 + 200 * DAY, D0 + 364 * DAY]),
    "rf": ("double", RangeOpts(min=0.0, max=1000.0, precision=2, sparsity=2, trim_factor=2),
           [0.0, 1.25, 10.5, 10.51, 512.0, 999.99]),
    "rdec": ("decimal", RangeOpts(min=Decimal128("0"), max=Decimal128("1000"), precision=2, sparsity=2, trim_factor=2),
             [Decimal128(s) for s in ["0", "1.25", "10.5", "10.51", "512", "999.99"]]),
}


def range_fields():
    out = []
    for path, (t, opts, _) in RANGES.items():
        q = {"queryType": "range", "contention": 0, "sparsity": opts.sparsity, "trimFactor": opts.trim_factor,
             "min": opts.min, "max": opts.max}
        if opts.precision is not None:
            q["precision"] = opts.precision
        out.append({"path": path, "bsonType": t, "keyId": None, "queries": q})
    return out


class QeSuite(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.q = common.Qe("qe")
        cls.dbname = common.db_name("qe")
        cls.q.plain.drop_database(cls.dbname)
        cls.q.key_vault.drop()
        cls.q.key_vault.create_index(
            "keyAltNames", unique=True, partialFilterExpression={"keyAltNames": {"$exists": True}}
        )
        db = cls.q.plain[cls.dbname]
        _, cls.people_ef = cls.q.ce.create_encrypted_collection(
            db, "people", {"fields": PEOPLE_FIELDS}, "local")
        _, cls.ranges_ef = cls.q.ce.create_encrypted_collection(
            db, "ranges", {"fields": range_fields()}, "local")
        cls.keys = {f["path"]: f["keyId"] for f in cls.people_ef["fields"] + cls.ranges_ef["fields"]}

    @classmethod
    def tearDownClass(cls):
        cls.q.plain.drop_database(cls.dbname)
        cls.q.plain.drop_database(cls.q.key_vault.database.name)
        cls.q.close()

    # -- helpers ---------------------------------------------------------

    def enc(self, value, path, algorithm, **kw):
        return self.q.ce.encrypt(value, algorithm, key_id=self.keys[path], **kw)

    def eq_payload(self, path, value, contention):
        return self.enc(value, path, EQ, query_type=QueryType.EQUALITY, contention_factor=contention)

    def ids(self, cursor):
        return sorted(d["_id"] for d in cursor)

    # -- tests -----------------------------------------------------------

    def test_create_encrypted_collection_makes_collection_state_and_keys(self):
        db = self.q.plain[self.dbname]
        infos = {c["name"]: c for c in db.list_collections()}
        for name in ["people", "enxcol_.people.esc", "enxcol_.people.ecoc",
                     "ranges", "enxcol_.ranges.esc", "enxcol_.ranges.ecoc"]:
            self.assertIn(name, infos)
        ef = infos["people"]["options"]["encryptedFields"]
        self.assertEqual(ef["escCollection"], "enxcol_.people.esc")
        self.assertEqual(ef["ecocCollection"], "enxcol_.people.ecoc")
        self.assertEqual([f["keyId"] for f in ef["fields"]], [f["keyId"] for f in self.people_ef["fields"]])
        self.assertIn("clusteredIndex", infos["enxcol_.people.esc"]["options"])
        # One data key per field, in the key vault.
        for key_id in self.keys.values():
            self.assertIsNotNone(self.q.key_vault.find_one({"_id": key_id}))
        self.assertEqual(self.q.key_vault.count_documents({}), len(self.keys))
        names = [i["name"] for i in db.people.list_indexes()]
        self.assertIn("__safeContent___1", names)
        # A second create of the same collection is NamespaceExists.
        with self.assertRaises(OperationFailure) as ctx:
            db.command("create", "people")
        self.assertEqual(ctx.exception.code, 48)

    def test_equality_indexed_contention_0_and_8_and_unindexed(self):
        auto = self.q.auto[self.dbname]
        plain = self.q.plain[self.dbname]
        plain.people_plain.drop()
        names = ["ann", "bob", "cat", "ann", "ann", "bob", "dan", "cat", "ann"]
        for i, n in enumerate(names):
            tag = "x" if i % 3 else "y"
            auto.people.insert_one({
                "_id": i, "kind": "person",
                "eq0": self.enc(n, "eq0", EQ, contention_factor=0),
                "eq8": self.enc(tag, "eq8", EQ, contention_factor=8),
                "un": self.enc("note %d" % i, "un", UN),
            })
            plain.people_plain.insert_one({"_id": i, "kind": "person", "eq0": n, "eq8": tag, "un": "note %d" % i})
        for value in ["ann", "bob", "cat", "dan", "nobody"]:
            got = self.ids(auto.people.find({"eq0": self.eq_payload("eq0", value, 0)}))
            want = self.ids(plain.people_plain.find({"eq0": value}))
            self.assertEqual(got, want, value)
        for value in ["x", "y", "z"]:
            got = self.ids(auto.people.find({"eq8": {"$eq": self.eq_payload("eq8", value, 8)}}))
            want = self.ids(plain.people_plain.find({"eq8": value}))
            self.assertEqual(got, want, value)
        got = self.ids(auto.people.find(
            {"eq0": {"$in": [self.eq_payload("eq0", "bob", 0), self.eq_payload("eq0", "dan", 0)]}}))
        self.assertEqual(got, self.ids(plain.people_plain.find({"eq0": {"$in": ["bob", "dan"]}})))
        # Equality combined with a plaintext predicate and a projection.
        got = list(auto.people.find({"eq0": self.eq_payload("eq0", "ann", 0), "_id": {"$gte": 3}}, {"eq0": 1, "un": 1}))
        self.assertEqual([d["_id"] for d in got], [3, 4, 8])
        # Results come back as stored values that libmongocrypt decrypts.
        for d in got:
            self.assertEqual(d["eq0"], "ann")
            self.assertEqual(d["un"], "note %d" % d["_id"])
        raw = plain.people.find_one({"_id": 0})
        self.assertEqual(raw["eq0"].subtype, 6)
        self.assertEqual(raw["eq0"][0], 14)  # FLE2IndexedEqualityEncryptedValueV2
        self.assertEqual(raw["un"][0], 16)   # FLE2UnindexedEncryptedValueV2
        self.assertEqual(len(raw["__safeContent__"]), 2)
        # count and aggregate see the same documents.
        self.assertEqual(auto.people.count_documents({"eq0": self.eq_payload("eq0", "ann", 0)}), 4)

    def test_range_on_int_long_date_double_decimal(self):
        auto = self.q.auto[self.dbname]
        plain = self.q.plain[self.dbname]
        plain.ranges_plain.drop()
        n = len(next(iter(RANGES.values()))[2])
        for i in range(n):
            enc_doc, plain_doc = {"_id": i}, {"_id": i}
            for path, (_, opts, values) in RANGES.items():
                enc_doc[path] = self.enc(values[i], path, RANGE, contention_factor=0, range_opts=opts)
                plain_doc[path] = values[i]
            auto.ranges.insert_one(enc_doc)
            plain.ranges_plain.insert_one(plain_doc)
        for path, (_, opts, values) in RANGES.items():
            lo, hi, mid = values[1], values[4], values[3]
            cases = [
                {"$and": [{path: {"$gte": lo}}, {path: {"$lt": hi}}]},
                {"$and": [{path: {"$gt": lo}}, {path: {"$lte": hi}}]},
                {"$and": [{path: {"$gt": mid}}]},
                {"$and": [{path: {"$lte": mid}}]},
                {"$and": [{path: {"$gte": mid}}, {path: {"$lte": mid}}]},
                {"$and": [{path: {"$gt": values[-1]}}]},
            ]
            for expr in cases:
                payload = self.q.ce.encrypt_expression(
                    expr, RANGE, key_id=self.keys[path], query_type=QueryType.RANGE,
                    contention_factor=0, range_opts=opts)
                got = self.ids(auto.ranges.find(payload))
                want = self.ids(plain.ranges_plain.find(expr))
                self.assertEqual(got, want, "%s %s" % (path, expr))
            # Decrypted values are the inserted ones.
            for d in auto.ranges.find({}, {path: 1}):
                self.assertEqual(d[path], values[d["_id"]])

    def test_stored_tags_match_the_specification_at_contention_0(self):
        # Facts from MongoDB's Queryable Encryption driver specification
        # tests (fle2v2-InsertFind-Indexed): the data key 12345678-1234-
        # 9876-1234-123456789012 wrapped with the specification's local
        # master key, and the __safeContent__ tag a server stores for the
        # value "123" inserted once at contention 0 with that key.
        master = base64.b64decode(
            "Mng0NCt4ZHVUYUJCa1kxNkVyNUR1QURhZ2h2UzR2d2RrZzh0cFBwM3R6NmdWMDFB"
            "MUN3YkQ5aXRRMkhGRGdQV09wOGVNYUMxT2k3NjZKelhaQmRCZGJkTXVyZG9uSjFk")
        key_id = Binary(uuid.UUID("12345678-1234-9876-1234-123456789012").bytes, UUID_SUBTYPE)
        key_material = base64.b64decode(
            "sHe0kz57YW7v8g9VP9sf/+K1ex4JqKc5rf/URX3n3p8XdZ6+15uXPaSayC6adWbNxkFskuMCOifDoTT+rkqMtFkD"
            "clOy884RuGGtUysq3X7zkAWYTKi8QAfKkajvVbZl2y23UqgVasdQu3OVBQCrH/xY00nNAs/52e958nVjBuzQkSb1"
            "T8pKJAyjZsHJ60+FtnfafDZSTAIBJYn7UWBCwQ==")
        expected_tag = base64.b64decode("31eCYlbQoVboc5zwC8IoyJVSkag9PxREka8dkmbXJeY=")
        dbname = common.db_name("spec")
        kv_ns = common.db_name("spec_kv") + ".datakeys"
        q = common.Qe("spec", master_key=master, key_vault=kv_ns)
        try:
            q.plain.drop_database(dbname)
            q.key_vault.drop()
            q.key_vault.insert_one({
                "_id": key_id, "keyMaterial": Binary(key_material, 0),
                "creationDate": datetime.datetime(2022, 4, 2, 15, 54, 11, 981000),
                "updateDate": datetime.datetime(2022, 4, 2, 15, 54, 11, 981000),
                "status": 0, "masterKey": {"provider": "local"},
            })
            q.plain[dbname].create_collection("default", encryptedFields={"fields": [
                {"keyId": key_id, "path": "encryptedIndexed", "bsonType": "string",
                 "queries": {"queryType": "equality", "contention": 0}}]})
            value = q.ce.encrypt("123", EQ, key_id=key_id, contention_factor=0)
            q.auto[dbname]["default"].insert_one({"_id": 1, "encryptedIndexed": value})
            stored = q.plain[dbname]["default"].find_one({"_id": 1})
            self.assertEqual(stored["__safeContent__"], [expected_tag])
            found = q.auto[dbname]["default"].find_one(
                {"encryptedIndexed": q.ce.encrypt("123", EQ, key_id=key_id, query_type=QueryType.EQUALITY,
                                                  contention_factor=0)})
            self.assertEqual(found["encryptedIndexed"], "123")
        finally:
            q.plain.drop_database(dbname)
            q.plain.drop_database(kv_ns.split(".")[0])
            q.close()

    def test_compact_and_cleanup_shrink_the_esc_and_keep_documents_findable(self):
        dbname = common.db_name("compact")
        q = common.Qe("compact")
        try:
            q.plain.drop_database(dbname)
            fields = [
                {"path": "v", "bsonType": "string", "keyId": None, "queries": {"queryType": "equality", "contention": 0}},
                {"path": "r", "bsonType": "int", "keyId": None,
                 "queries": {"queryType": "range", "contention": 0, "min": 0, "max": 100, "sparsity": 1, "trimFactor": 1}},
            ]
            _, ef = q.ce.create_encrypted_collection(q.plain[dbname], "c", {"fields": fields}, "local")
            keys = {f["path"]: f["keyId"] for f in ef["fields"]}
            ro = RangeOpts(min=0, max=100, sparsity=1, trim_factor=1)
            coll = q.auto[dbname].c
            values = ["a", "b"] * 10
            for i, v in enumerate(values):
                coll.insert_one({"_id": i, "v": q.ce.encrypt(v, EQ, key_id=keys["v"], contention_factor=0),
                                 "r": q.ce.encrypt(i, RANGE, key_id=keys["r"], contention_factor=0, range_opts=ro)})
            esc = q.plain[dbname]["enxcol_.c.esc"]
            ecoc = q.plain[dbname]["enxcol_.c.ecoc"]
            before = esc.estimated_document_count()
            self.assertGreater(ecoc.estimated_document_count(), 0)

            def findable():
                for v in ["a", "b"]:
                    p = q.ce.encrypt(v, EQ, key_id=keys["v"], query_type=QueryType.EQUALITY, contention_factor=0)
                    got = sorted(d["_id"] for d in coll.find({"v": p}))
                    self.assertEqual(got, [i for i, x in enumerate(values) if x == v])
                expr = q.ce.encrypt_expression({"$and": [{"r": {"$gte": 3}}, {"r": {"$lt": 12}}]}, RANGE,
                                               key_id=keys["r"], query_type=QueryType.RANGE,
                                               contention_factor=0, range_opts=ro)
                self.assertEqual(sorted(d["_id"] for d in coll.find(expr)), list(range(3, 12)))

            findable()
            reply = q.auto[dbname].command("compactStructuredEncryptionData", "c")
            self.assertEqual(reply["ok"], 1.0)
            self.assertGreater(reply["stats"]["esc"]["deleted"], 0)
            after = esc.estimated_document_count()
            self.assertLess(after, before)
            self.assertEqual(ecoc.estimated_document_count(), 0)
            findable()
            # Inserts after compaction count on from the anchors.
            for i in range(20, 24):
                v = values[i % 2]
                values.append(v)
                coll.insert_one({"_id": i, "v": q.ce.encrypt(v, EQ, key_id=keys["v"], contention_factor=0),
                                 "r": q.ce.encrypt(i, RANGE, key_id=keys["r"], contention_factor=0, range_opts=ro)})
            findable()
            reply = q.auto[dbname].command("cleanupStructuredEncryptionData", "c")
            self.assertEqual(reply["ok"], 1.0)
            findable()
            self.assertLessEqual(esc.estimated_document_count(), after + 8)
        finally:
            q.plain.drop_database(dbname)
            q.plain.drop_database(q.key_vault.database.name)
            q.close()

    def test_transaction_of_two_encrypted_inserts_is_all_or_nothing(self):
        auto = self.q.auto[self.dbname]
        p = lambda v: self.eq_payload("eq0", v, 0)
        with self.q.auto.start_session() as s:
            with s.start_transaction():
                for i in (100, 101):
                    auto.people.insert_one({"_id": i, "eq0": self.enc("txn-commit", "eq0", EQ, contention_factor=0)},
                                           session=s)
        self.assertEqual(self.ids(auto.people.find({"eq0": p("txn-commit")})), [100, 101])
        with self.q.auto.start_session() as s:
            s.start_transaction()
            for i in (102, 103):
                auto.people.insert_one({"_id": i, "eq0": self.enc("txn-abort", "eq0", EQ, contention_factor=0)},
                                       session=s)
            # Inside, the transaction sees its own writes.
            self.assertEqual(auto.people.count_documents({"_id": {"$in": [102, 103]}}, session=s), 2)
            s.abort_transaction()
        self.assertEqual(self.ids(auto.people.find({"eq0": p("txn-abort")})), [])
        self.assertEqual(self.q.plain[self.dbname].people.count_documents({"_id": {"$in": [102, 103]}}), 0)
        # The positions the aborted inserts took are free again.
        auto.people.insert_one({"_id": 104, "eq0": self.enc("txn-abort", "eq0", EQ, contention_factor=0)})
        self.assertEqual(self.ids(auto.people.find({"eq0": p("txn-abort")})), [104])

    def test_eight_clients_inserting_the_same_value_lose_no_document(self):
        per_client, clients = 12, 8
        base = 1000
        errors = []

        def work(c):
            cl = common.client(auto_encryption_opts=AutoEncryptionOpts(
                self.q.kms, self.q.key_vault_ns, bypass_query_analysis=True))
            try:
                coll = cl[self.dbname].people
                for k in range(per_client):
                    coll.insert_one({"_id": base + c * per_client + k,
                                     "eq0": self.enc("same", "eq0", EQ, contention_factor=0)})
            except PyMongoError as e:  # reported by the main thread
                errors.append(repr(e))
            finally:
                cl.close()

        threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        got = self.ids(self.q.auto[self.dbname].people.find({"eq0": self.eq_payload("eq0", "same", 0)}))
        self.assertEqual(got, list(range(base, base + clients * per_client)))
        # Every insert took a position of its own: no two documents share a tag.
        tags = [t for d in self.q.plain[self.dbname].people.find({"_id": {"$gte": base, "$lt": base + 1000}})
                for t in d["__safeContent__"]]
        self.assertEqual(len(tags), len(set(tags)))

    def test_refusals_match_mongod(self):
        plain = self.q.plain[self.dbname]
        auto = self.q.auto[self.dbname]
        payload = self.enc("ann", "eq0", EQ, contention_factor=0)
        # An insert payload without encryptionInformation: the implicit
        # validator's DocumentValidationFailure.
        with self.assertRaises(OperationFailure) as ctx:
            plain.people.insert_one({"_id": 500, "eq0": payload})
        self.assertEqual(ctx.exception.code, 121)
        # Plaintext at an encrypted path, likewise.
        with self.assertRaises(OperationFailure) as ctx:
            plain.people.insert_one({"_id": 501, "eq0": "ann"})
        self.assertEqual(ctx.exception.code, 121)
        # A find payload without encryptionInformation.
        with self.assertRaises(OperationFailure) as ctx:
            list(plain.people.find({"eq0": self.eq_payload("eq0", "ann", 0)}))
        self.assertEqual(ctx.exception.code, 2)
        # A client-written __safeContent__.
        with self.assertRaises(OperationFailure) as ctx:
            plain.people.insert_one({"_id": 502, "__safeContent__": []})
        self.assertEqual(ctx.exception.code, 2)
        self.assertIn("Cannot insert a document with field name __safeContent__", str(ctx.exception))
        with self.assertRaises(OperationFailure) as ctx:
            plain.people.update_one({"_id": 0}, {"$set": {"__safeContent__": []}})
        self.assertEqual(ctx.exception.code, 6666200)
        # Multi-document update and delete through the QE path.
        with self.assertRaises(OperationFailure) as ctx:
            auto.people.update_many({"kind": "person"}, {"$set": {"seen": True}})
        self.assertEqual(ctx.exception.code, 6371503)
        with self.assertRaises(OperationFailure) as ctx:
            auto.people.delete_many({"kind": "nobody"})
        self.assertEqual(ctx.exception.code, 6371303)
        # Nothing of it was written.
        self.assertEqual(plain.people.count_documents({"_id": {"$in": [500, 501, 502]}}), 0)
        # A single-document update through the QE path replaces an
        # encrypted value with a new insert payload.
        auto.people.insert_one({"_id": 600, "eq0": self.enc("old", "eq0", EQ, contention_factor=0), "kind": "upd"})
        auto.people.update_one({"_id": 600}, {"$set": {"eq0": self.enc("new", "eq0", EQ, contention_factor=0)}})
        self.assertEqual(self.ids(auto.people.find({"eq0": self.eq_payload("eq0", "new", 0)})), [600])
        self.assertEqual(self.ids(auto.people.find({"eq0": self.eq_payload("eq0", "old", 0)})), [])
        doc = auto.people.find_one_and_update(
            {"_id": 600}, {"$set": {"kind": "updated"}}, return_document=True)
        self.assertEqual((doc["eq0"], doc["kind"]), ("new", "updated"))
        self.assertEqual(len(plain.people.find_one({"_id": 600})["__safeContent__"]), 1)
        auto.people.delete_one({"eq0": self.eq_payload("eq0", "new", 0)})
        self.assertIsNone(plain.people.find_one({"_id": 600}))


if __name__ == "__main__":
    unittest.main()
