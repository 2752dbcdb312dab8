//! Who is trusted, and for how long: trust anchors and pinned leaves, CRLs, DER and name
//! comparison, and the bounds that resumed sessions and shared tickets carry.

pub(crate) mod client;
pub(crate) mod crl;
pub(crate) mod scope;
pub(crate) mod session;
pub(crate) mod tickets;
pub(crate) mod verify;
pub(crate) mod x509;
