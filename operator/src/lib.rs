//! The Synco operator: kube-rs controllers for cooperatives, proposals, allocations, pools and models.
