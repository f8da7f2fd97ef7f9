//! mimi-discovery: discovery for interoperable end-to-end encrypted messaging (IETF MIMI).
pub mod changes;
pub mod cli;
pub mod dp;
pub mod name;
pub mod operate;
pub mod pir;
pub mod publish;
pub mod record;
pub mod resolver;
pub mod signed;
pub mod sii;
pub mod sys;
pub mod tls;
pub mod tsig;
pub mod wire;
pub mod zone;
