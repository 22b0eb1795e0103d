//! The Synco API contract: every custom resource in `synco.coop/v1alpha1`.
//!
//! One co-op lives in one namespace. The types here are the single source of
//! truth: the CRD YAML under `crds/yaml/` (and the chart's copy) is generated
//! from them by the `crdgen` binary and is never edited by hand.
//!
//! Validation that must hold for every client is written into the schema as
//! CEL rules (`x-kubernetes-validations`), so the API server enforces it for
//! `kubectl` users exactly as for the gateway and the operator.

pub mod conditions;
pub mod demand;
pub mod generate;
pub mod manifests;
pub mod resources;

pub use manifests::{Manifest, ManifestError};
pub use resources::allocation::{
    Allocation, AllocationPhase, AllocationPlan, AllocationSpec, AllocationStatus, Floor, Quota, SubjectKind,
};
pub use resources::compute_pool::{
    CONTRIBUTED_BY_LABEL, ComputePool, ComputePoolSpec, ComputePoolStatus, PoolNode,
};
pub use resources::cooperative::{
    AssistantBylaws, ClassVotingPower, Cooperative, CooperativeSpec, CooperativeStatus, MemberClass,
    PatronageBasis, PatronageBylaws, Peer, PeerPrice, PeerTerms, Price, PriceCard, Reciprocity,
    SurplusDestination, SurplusPolicy, VotingDefault,
};
pub use resources::customer::{Billing, Customer, CustomerSpec, CustomerStatus};
pub use resources::delegation::{Delegation, DelegationSpec};
pub use resources::inference_model::{
    Capabilities, EngineKind, EngineRouting, InferenceModel, InferenceModelSpec, InferenceModelStatus,
    ModelAccess, ModelEngine, ModelPhase, ModelSource, VolumeSource,
};
pub use resources::member::{Member, MemberSpec, MemberStatus, OrganisationKind, Standing};
pub use resources::proposal::{
    AllocationSplit, BylawChange, DelegationUsed, Elector, FloorTarget, IgnoredVote, MemberAdmission,
    ModelAdoption, OptionCount, PatronageDistribution, Proposal, ProposalEffect, ProposalKind,
    ProposalOption, ProposalPhase, ProposalSpec, ProposalStatus, RefundLine, Round, Tally, TieRecord,
};
pub use resources::vote::{Position, Vote, VoteSpec, VoteStatus};
pub use resources::voting::{Fraction, VotingMethod, VotingRules};

/// The API group of every Synco resource.
pub const GROUP: &str = "synco.coop";
/// The one API version served so far.
pub const VERSION: &str = "v1alpha1";
/// The category that makes `kubectl get synco` list every Synco resource.
pub const CATEGORY: &str = "synco";
