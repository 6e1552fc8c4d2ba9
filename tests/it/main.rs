//! tend's integration tests: one binary, one module per area.

mod agent;
mod apply;
mod cli;
mod config_errors;
mod ec2;
mod examples;
mod host_local;
mod kube;
mod kube_fake;
mod plan;
mod safety;
mod secrets;
mod secrets_cli;
mod secrets_sops;
mod ssh;
mod ssh_rootfs;
mod support;
