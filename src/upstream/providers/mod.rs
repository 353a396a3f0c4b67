//! One file per provider, each only wire mapping behind [`super::Upstream`].

pub mod aimlapi;
