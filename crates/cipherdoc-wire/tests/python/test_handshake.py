"""The handshake: what pymongo learns from hello, and its refusals when
`cipherdoc serve` answers as an older server (--max-wire-version) or a
standalone (--standalone)."""

import os
import unittest

from pymongo import MongoClient
from pymongo.encryption import ClientEncryption
from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

import common


class HandshakeSuite(unittest.TestCase):
    def test_replica_set_primary_of_mongodb_8(self):
        c = common.client()
        try:
            hello = c.admin.command("hello")
            self.assertTrue(hello["isWritablePrimary"])
            self.assertEqual(hello["maxWireVersion"], 25)
            self.assertEqual(hello["setName"], "cipherdoc")
            self.assertEqual(hello["hosts"], [hello["me"]])
            self.assertEqual(hello["logicalSessionTimeoutMinutes"], 30)
            self.assertEqual(hello["maxMessageSizeBytes"], 48_000_000)
            self.assertTrue(c.admin.command("isMaster")["ismaster"])
            self.assertEqual(c.admin.command("ping")["ok"], 1.0)
            self.assertTrue(c.admin.command("buildInfo")["version"].startswith("8.0."))
            self.assertEqual(c.topology_description.topology_type_name, "ReplicaSetWithPrimary")
        finally:
            c.close()

    @unittest.skipUnless(os.environ.get("CIPHERDOC_WIRE_OLD_URI"), "no old-server instance")
    def test_an_old_server_is_refused_queryable_encryption(self):
        c = MongoClient(os.environ["CIPHERDOC_WIRE_OLD_URI"], uuidRepresentation="standard",
                        serverSelectionTimeoutMS=5000)
        try:
            self.assertLess(c.admin.command("hello")["maxWireVersion"], 21)
            kms = {"local": {"key": os.urandom(96)}}
            ce = ClientEncryption(kms, common.db_name("old_kv") + ".datakeys", c, common.OPTS)
            with self.assertRaises(PyMongoError) as ctx:
                ce.create_encrypted_collection(c[common.db_name("old")], "c", {"fields": [
                    {"path": "s", "bsonType": "string", "keyId": None, "queries": {"queryType": "equality"}}]},
                    "local")
            self.assertIn("Queryable Encryption", str(ctx.exception))
            ce.close()
        finally:
            c.drop_database(common.db_name("old_kv"))
            c.drop_database(common.db_name("old"))
            c.close()

    @unittest.skipUnless(os.environ.get("CIPHERDOC_WIRE_STANDALONE_URI"), "no standalone instance")
    def test_a_standalone_is_refused_transactions(self):
        c = MongoClient(os.environ["CIPHERDOC_WIRE_STANDALONE_URI"], serverSelectionTimeoutMS=5000)
        try:
            self.assertNotIn("setName", c.admin.command("hello"))
            self.assertEqual(c.topology_description.topology_type_name, "Single")
            coll = c[common.db_name("standalone")].c
            coll.insert_one({"ok": 1})
            with c.start_session() as s:
                with self.assertRaises((ConfigurationError, OperationFailure)):
                    with s.start_transaction():
                        coll.insert_one({"in": "txn"}, session=s)
        finally:
            c.drop_database(common.db_name("standalone"))
            c.close()


if __name__ == "__main__":
    unittest.main()
