//! Wrapping and unwrapping cipherdoc data keys with a KMS: AWS KMS, Azure
//! Key Vault, GCP Cloud KMS and KMIP servers (plus `local` through a hook),
//! with the `masterKey` and credential shapes MongoDB uses, so that key
//! documents are interchangeable with libmongocrypt's.
//!
//! * [`KmsProvider`]: the async, object-safe provider trait.
//! * [`MasterKey`]: a key document's `masterKey`, to/from BSON.
//! * [`KmsCredentials`], [`ProviderSettings`], [`KmsProviders`]: configuration.
//! * [`DataKeyCache`]: unwrapped data keys with a TTL.

mod aws;
mod azure;
mod cache;
mod credentials;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod gcp;
mod http;
pub mod kmip;
mod local;
mod master_key;
mod name;
mod provider;
mod secret;
mod settings;
pub mod sigv4;
mod token;
mod trust;

pub use aws::AwsProvider;
pub use azure::{AZURE_API_VERSION, AzureProvider};
pub use cache::{Clock, DEFAULT_MAX_ENTRIES, DEFAULT_TTL, DataKeyCache, ManualClock, SystemClock};
pub use credentials::{
    AwsCredentials, AzureCredentials, GcpCredentials, KmipCredentials, KmsCredentials,
    LocalCredentials,
};
pub use error::KmsError;
pub use gcp::GcpProvider;
pub use http::{DEFAULT_DEADLINE, HttpOptions, MAX_RESPONSE_BYTES, RetryPolicy, TlsOptions};
pub use kmip::KmipProvider;
pub use local::LocalProvider;
pub use master_key::{
    AwsMasterKey, AzureMasterKey, Endpoint, GcpMasterKey, KmipMasterKey, LocalMasterKey, MasterKey,
};
pub use name::{ProviderKind, ProviderName};
pub use provider::{KmsProvider, LocalWrap, WrappedKey};
pub use secret::{Secret, SecretBytes};
pub use settings::{KmsProviders, ProviderSettings, build_provider};
pub use trust::{HostSet, KeyTrust, validate_host, validate_region};
