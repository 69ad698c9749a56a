#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod mutate;
mod targets;

pub use targets::seeds;

/// A fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// A labels request (`node::labels::wire::Request`).
    LabelsRequest,
    /// A labels response (`node::labels::wire::Response`), decoded and taken by a replica: a
    /// page of records pulled from a peer.
    LabelsPage,
    /// A label gossip message, judged by a replica.
    LabelsGossip,
    /// The bytes of a shard file, loaded by a replica (a damaged or planted file).
    ShardFile,
    /// A model registry request or response, and the signed updates it carries.
    ModelsWire,
    /// A signed policy and the policy kind's messages.
    Policy,
    /// A signed manifest root, a manifest page, a dataset announcement.
    Manifest,
    /// The frames of the replication and blob protocols.
    Frames,
    /// Model weights from a peer: safetensors with a model spec.
    Weights,
}

impl Target {
    /// Every target.
    pub const ALL: &'static [Target] = &[
        Target::LabelsRequest,
        Target::LabelsPage,
        Target::LabelsGossip,
        Target::ShardFile,
        Target::ModelsWire,
        Target::Policy,
        Target::Manifest,
        Target::Frames,
        Target::Weights,
    ];

    /// Its name (the libFuzzer entry's).
    pub fn name(self) -> &'static str {
        match self {
            Target::LabelsRequest => "labels_request",
            Target::LabelsPage => "labels_page",
            Target::LabelsGossip => "labels_gossip",
            Target::ShardFile => "shard_file",
            Target::ModelsWire => "models_wire",
            Target::Policy => "policy",
            Target::Manifest => "manifest",
            Target::Frames => "frames",
            Target::Weights => "weights",
        }
    }
}

/// Runs `target` on `data`: returns, or panics on a bug (a panic in a decoder, or a broken
/// invariant).
pub fn run(target: Target, data: &[u8]) {
    match target {
        Target::LabelsRequest => targets::labels_request(data),
        Target::LabelsPage => targets::labels_page(data),
        Target::LabelsGossip => targets::labels_gossip(data),
        Target::ShardFile => targets::shard_file(data),
        Target::ModelsWire => targets::models_wire(data),
        Target::Policy => targets::policy(data),
        Target::Manifest => targets::manifest(data),
        Target::Frames => targets::frames(data),
        Target::Weights => targets::weights(data),
    }
}
