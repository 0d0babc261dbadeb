"""Shared setup of the wire suite: where `cipherdoc serve` listens, unique
database names, and the clients (plain, key vault, auto-encrypting with
bypass_query_analysis) that the tests use.

The Rust harness (crates/cipherdoc-cli/tests/serve.rs) starts the servers
and sets:
  CIPHERDOC_WIRE_URI             the replica-set server under test
  CIPHERDOC_WIRE_PREFIX          a prefix for this run's database names
  CIPHERDOC_WIRE_OLD_URI         a server answering with an old maxWireVersion
  CIPHERDOC_WIRE_STANDALONE_URI  a server answering as a standalone
  CIPHERDOC_WIRE_REVERSE         a JSON file describing documents stored by
                                 cipherdoc's model layer (SQLite run only)
"""

import os
import unittest

from bson.binary import STANDARD
from bson.codec_options import CodecOptions
from pymongo import MongoClient
from pymongo.encryption import ClientEncryption
from pymongo.encryption_options import AutoEncryptionOpts

URI = os.environ.get("CIPHERDOC_WIRE_URI", "")
PREFIX = os.environ.get("CIPHERDOC_WIRE_PREFIX", "wiretest_")
OPTS = CodecOptions(uuid_representation=STANDARD)

if not URI:
    raise unittest.SkipTest("CIPHERDOC_WIRE_URI is not set; run through cargo test -p cipherdoc-cli --test serve")


def db_name(suffix):
    return PREFIX + suffix


def client(**kw):
    kw.setdefault("serverSelectionTimeoutMS", 10000)
    return MongoClient(URI, uuidRepresentation="standard", **kw)


class Qe:
    """A local KMS master key, a key vault, and the three clients QE needs."""

    def __init__(self, suffix, master_key=None, key_vault=None):
        self.kms = {"local": {"key": master_key or os.urandom(96)}}
        self.key_vault_ns = key_vault or (db_name(suffix + "_kv") + ".datakeys")
        self.plain = client()
        kv_db, kv_coll = self.key_vault_ns.split(".", 1)
        self.key_vault = self.plain[kv_db][kv_coll]
        self.ce = ClientEncryption(self.kms, self.key_vault_ns, self.plain, OPTS)
        self.auto = client(
            auto_encryption_opts=AutoEncryptionOpts(
                self.kms, self.key_vault_ns, bypass_query_analysis=True
            )
        )

    def close(self):
        self.ce.close()
        self.auto.close()
        self.plain.close()
