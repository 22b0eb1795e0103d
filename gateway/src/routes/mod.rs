//! The handlers, one module per part of the API. [`crate::router`] lists which path
//! goes where, and which few need no key.

pub mod admin;
pub mod federation;
pub mod governance;
pub mod openai;
pub mod ops;
pub mod usage;
