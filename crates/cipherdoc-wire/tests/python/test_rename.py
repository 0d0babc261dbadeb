"""`renameCollection` through `cipherdoc serve`, as pymongo sends it (an
admin command): a plain rename, an encrypted collection renamed over an
existing collection with dropTarget (what a copy migration does) and then
found by its encrypted field under the new name, and mongod's refusals.

serve has no users: it renames encrypted collections as a mongod without
access control does (mongod otherwise needs the cluster action
setUserWriteBlockMode). Its ESC and ECOC are renamed with the collection,
where mongod keeps their names: the test reads the names from
listCollections, as libmongocrypt does."""

import unittest

from pymongo.encryption import Algorithm, QueryType
from pymongo.errors import OperationFailure

import common

FIELDS = [
    {"path": "ssn", "bsonType": "string", "keyId": None, "queries": {"queryType": "equality", "contention": 0}},
]


class RenameSuite(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.q = common.Qe("rename")
        cls.dbname = common.db_name("rename")
        cls.q.plain.drop_database(cls.dbname)
        cls.q.key_vault.drop()
        cls.admin = cls.q.plain.admin

    @classmethod
    def tearDownClass(cls):
        cls.q.plain.drop_database(cls.dbname)
        cls.q.plain.drop_database(cls.q.key_vault.database.name)
        cls.q.close()

    def ns(self, coll):
        return "%s.%s" % (self.dbname, coll)

    def rename(self, a, b, **kw):
        return self.admin.command("renameCollection", self.ns(a), to=self.ns(b), **kw)

    def names(self):
        return {c["name"]: c for c in self.q.plain[self.dbname].list_collections()}

    def test_plain_rename_keeps_documents_and_indexes(self):
        db = self.q.plain[self.dbname]
        db.p_from.drop()
        db.p_to.drop()
        db.p_from.insert_many([{"_id": i, "k": i % 3} for i in range(10)])
        db.p_from.create_index("k", name="k_1")
        self.rename("p_from", "p_to")
        infos = self.names()
        self.assertNotIn("p_from", infos)
        self.assertEqual(sorted(d["_id"] for d in db.p_to.find({"k": 1})), [1, 4, 7])
        self.assertIn("k_1", [i["name"] for i in db.p_to.list_indexes()])
        # pymongo's own helper sends the same command.
        db.p_to.rename("p_again")
        self.assertEqual(db.p_again.count_documents({}), 10)

    def test_encrypted_collection_replaces_a_plain_one_with_drop_target(self):
        db = self.q.plain[self.dbname]
        for c in ["visit", "visit_copy"]:
            db.drop_collection(c)
        db.visit.insert_many([{"_id": i, "ssn": "plain %d" % i} for i in range(4)])
        _, ef = self.q.ce.create_encrypted_collection(db, "visit_copy", {"fields": FIELDS}, "local")
        key = ef["fields"][0]["keyId"]
        auto = self.q.auto[self.dbname]
        for i in range(4):
            value = "ssn-%d" % (i % 2)
            auto.visit_copy.insert_one({"_id": i, "ssn": self.q.ce.encrypt(
                value, Algorithm.INDEXED, key_id=key, contention_factor=0)})
        # Without dropTarget the existing target is refused.
        with self.assertRaises(OperationFailure) as ctx:
            self.rename("visit_copy", "visit")
        self.assertEqual(ctx.exception.code, 48)
        self.assertEqual(ctx.exception.details["codeName"], "NamespaceExists")
        self.rename("visit_copy", "visit", dropTarget=True)
        infos = self.names()
        self.assertNotIn("visit_copy", infos)
        self.assertNotIn("enxcol_.visit_copy.esc", infos)
        ef_now = infos["visit"]["options"]["encryptedFields"]
        self.assertEqual([f["keyId"] for f in ef_now["fields"]], [key])
        for state in [ef_now["escCollection"], ef_now["ecocCollection"]]:
            self.assertIn(state, infos)
        self.assertEqual(db.command("count", ef_now["escCollection"])["n"], 4)
        # Found by the encrypted field under the new name, by a fresh
        # auto-encrypting client (which reads the schema from
        # listCollections) and by the one that wrote them.
        payload = self.q.ce.encrypt("ssn-1", Algorithm.INDEXED, key_id=key,
                                    query_type=QueryType.EQUALITY, contention_factor=0)
        self.assertEqual(sorted(d["_id"] for d in auto.visit.find({"ssn": payload})), [1, 3])
        self.assertEqual(db.visit.count_documents({}), 4)
        self.assertTrue(all(not isinstance(d["ssn"], str) for d in db.visit.find()))

    def test_an_encrypted_target_is_dropped_with_its_state(self):
        db = self.q.plain[self.dbname]
        for c in ["e_old", "e_new"]:
            db.drop_collection(c)
        self.q.ce.create_encrypted_collection(db, "e_old", {"fields": FIELDS}, "local")
        self.q.ce.create_encrypted_collection(db, "e_new", {"fields": FIELDS}, "local")
        self.rename("e_new", "e_old", dropTarget=True)
        infos = self.names()
        self.assertNotIn("e_new", infos)
        states = sorted(n for n in infos if n.startswith("enxcol_.e_"))
        ef = infos["e_old"]["options"]["encryptedFields"]
        self.assertEqual(states, sorted([ef["ecocCollection"], ef["escCollection"]]))

    def test_refusals_match_mongod(self):
        db = self.q.plain[self.dbname]
        db.r_a.drop()
        db.r_b.drop()
        db.r_a.insert_one({"_id": 1})
        db.r_b.insert_one({"_id": 1})
        cases = [
            # Not on the admin database.
            (lambda: db.command("renameCollection", self.ns("r_a"), to=self.ns("r_c")), 13),
            (lambda: self.rename("r_a", "r_a"), 20),
            (lambda: self.rename("r_missing", "r_c"), 26),
            (lambda: self.rename("r_a", "r_b"), 48),
            (lambda: self.admin.command("renameCollection", self.ns("r_a"), to="nodot"), 73),
            (lambda: self.admin.command("renameCollection", self.ns("r_a"),
                                        to=common.db_name("rename_other") + ".r_a"), 115),
            (lambda: self.rename("r_a", "enxcol_.r_a.esc"), 20),
        ]
        for run, code in cases:
            with self.assertRaises(OperationFailure) as ctx:
                run()
            self.assertEqual(ctx.exception.code, code, ctx.exception.details)
        # Nothing moved.
        self.assertEqual(db.r_a.count_documents({}), 1)
        self.assertEqual(db.r_b.count_documents({}), 1)

    def test_rename_in_a_transaction_is_refused(self):
        db = self.q.plain[self.dbname]
        db.t_a.drop()
        db.t_a.insert_one({"_id": 1})
        with self.q.plain.start_session() as s:
            s.start_transaction()
            db.t_a.insert_one({"_id": 2}, session=s)
            with self.assertRaises(OperationFailure) as ctx:
                self.admin.command("renameCollection", self.ns("t_a"), to=self.ns("t_b"), session=s)
            self.assertEqual(ctx.exception.code, 263)
        self.assertEqual(db.t_a.count_documents({}), 1)


if __name__ == "__main__":
    unittest.main()
