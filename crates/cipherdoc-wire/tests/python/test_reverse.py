"""The reverse direction: documents that cipherdoc's model layer stored
(in a SQLite database written by a Rust test, then served by `cipherdoc
serve`) are read by pymongo and decrypted by pymongocrypt's
ClientEncryption.decrypt, and found by an encrypted equality query built by
libmongocrypt."""

import json
import os
import unittest

from pymongo.encryption import Algorithm, ClientEncryption, QueryType
from pymongo.encryption_options import AutoEncryptionOpts

import common

FIXTURE = os.environ.get("CIPHERDOC_WIRE_REVERSE")


@unittest.skipUnless(FIXTURE, "no documents from cipherdoc's model layer (SQLite run only)")
class ReverseSuite(unittest.TestCase):
    def test_model_layer_documents_decrypt_with_libmongocrypt(self):
        with open(FIXTURE) as f:
            fx = json.load(f)
        with open(fx["master_key_file"], "rb") as f:
            master = f.read()
        self.assertEqual(len(master), 96)
        kms = {"local": {"key": master}}
        plain = common.client()
        ce = ClientEncryption(kms, fx["key_vault_namespace"], plain, common.OPTS)
        auto = common.client(auto_encryption_opts=AutoEncryptionOpts(
            kms, fx["key_vault_namespace"], bypass_query_analysis=True))
        try:
            coll = plain[fx["database"]][fx["collection"]]
            docs = list(coll.find().sort("name", 1))
            self.assertEqual(len(docs), len(fx["expected"]))
            for d in docs:
                want = fx["expected"][d["name"]]
                blob = d[fx["field"]]
                self.assertEqual(blob.subtype, 6)
                self.assertEqual(ce.decrypt(blob), want)
            # The collection's encryptedFields, as listCollections reports
            # them, drive an encrypted equality query made by libmongocrypt.
            info = plain[fx["database"]].list_collections(filter={"name": fx["collection"]}).next()
            field = next(f for f in info["options"]["encryptedFields"]["fields"] if f["path"] == fx["field"])
            name, value = next(iter(sorted(fx["expected"].items())))
            queries = field["queries"]
            if isinstance(queries, list):
                queries = queries[0]
            # An absent contention is the default of 8 (as libmongocrypt reads it).
            payload = ce.encrypt(value, Algorithm.INDEXED, key_id=field["keyId"], query_type=QueryType.EQUALITY,
                                 contention_factor=queries.get("contention", 8))
            found = list(auto[fx["database"]][fx["collection"]].find({fx["field"]: payload}))
            self.assertEqual([d["name"] for d in found], [name])
            self.assertEqual(found[0][fx["field"]], value)
        finally:
            ce.close()
            auto.close()
            plain.close()


if __name__ == "__main__":
    unittest.main()
