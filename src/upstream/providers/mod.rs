//! One file per provider, each only wire mapping behind [`super::Upstream`].

pub mod aimlapi;
pub mod fal;
pub mod kling;
pub mod oxen;
