//! The `PublicKey` and `PrivateKey` protobufs of the libp2p peer-ids spec.

/// Key type numbers from the spec's `KeyType` enum.
pub(crate) const KEY_TYPE_ED25519: i32 = 1;

/// `message PublicKey { required KeyType Type = 1; required bytes Data = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PublicKeyProto {
    #[prost(int32, required, tag = "1")]
    pub(crate) key_type: i32,
    #[prost(bytes = "vec", required, tag = "2")]
    pub(crate) data: Vec<u8>,
}

/// `message PrivateKey { required KeyType Type = 1; required bytes Data = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PrivateKeyProto {
    #[prost(int32, required, tag = "1")]
    pub(crate) key_type: i32,
    #[prost(bytes = "vec", required, tag = "2")]
    pub(crate) data: Vec<u8>,
}
