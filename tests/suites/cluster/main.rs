//! The cluster tier: the in-memory API server's own behaviour, then the controller against it.

mod apiserver;
mod chart;
mod controller;
mod plugin;
