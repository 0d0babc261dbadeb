//! Wrapping and unwrapping cipherdoc data keys with a KMS: AWS KMS, Azure
//! Key Vault, GCP Cloud KMS and KMIP servers, and a `local` 96-byte key
//! (wrapped with cipherdoc-crypto's FLE1 AEAD),
//! with the `masterKey` and credential shapes MongoDB uses, so that key
//! documents are interchangeable with libmongocrypt's.
//!
//! * [`KmsProvider`]: the async, object-safe provider trait.
//! * [`MasterKey`]: a key document's `masterKey`, to/from BSON.
//! * [`KmsCredentials`], [`ProviderSettings`], [`KmsProviders`]: configuration.
//! * [`DataKeyCache`]: unwrapped data keys with a TTL.

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "azure")]
mod azure;
mod cache;
mod credentials;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "gcp")]
mod gcp;
mod http;
#[cfg(feature = "kmip")]
pub mod kmip;
mod local;
mod master_key;
mod name;
mod provider;
mod secret;
mod settings;
pub mod sigv4;
#[cfg(any(feature = "azure", feature = "gcp"))]
mod token;
mod trust;

#[cfg(feature = "aws")]
pub use aws::AwsProvider;
#[cfg(feature = "azure")]
pub use azure::{AZURE_API_VERSION, AzureProvider};
pub use cache::{Clock, DEFAULT_MAX_ENTRIES, DEFAULT_TTL, DataKeyCache, ManualClock, SystemClock};
pub use credentials::{
    AwsCredentials, AzureCredentials, GcpCredentials, KmipCredentials, KmsCredentials,
    LocalCredentials,
};
pub use error::{KmsError, LocalKeyOperation};
#[cfg(feature = "gcp")]
pub use gcp::GcpProvider;
pub use http::{DEFAULT_DEADLINE, HttpOptions, MAX_RESPONSE_BYTES, RetryPolicy, TlsOptions};
#[cfg(feature = "kmip")]
pub use kmip::KmipProvider;
pub use local::LocalProvider;
pub use master_key::{
    AwsMasterKeyDoc, AzureMasterKeyDoc, Endpoint, GcpMasterKeyDoc, KmipMasterKeyDoc,
    LocalMasterKeyDoc, MasterKey,
};
pub use name::{ProviderKind, ProviderName};
pub use provider::{KmsProvider, WrappedKey};
pub use secret::{Secret, SecretBytes};
pub use settings::{KmsProviders, ProviderSettings, build_provider};
pub use trust::{HostSet, KeyTrust, validate_host, validate_region};
