//! The moto EC2 API server (TESTBED.md), one per test, stopped by PID when the test ends; and an
//! independent client (boto3, in the testbed's venv) to set up and check what the API holds.

use std::path::PathBuf;
use std::process::Command;

use super::repo;

fn script() -> PathBuf {
    repo().join("../shared/testbed/moto.sh")
}

fn python() -> PathBuf {
    let out = Command::new("bash").arg(repo().join("../shared/testbed/install.sh")).arg("--print").output();
    let root = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    PathBuf::from(root).join("venv/bin/python")
}

/// A running moto server.
pub struct Moto {
    pub url: String,
    dir: tempfile::TempDir,
    python: PathBuf,
}

impl Moto {
    /// Start one, or `None` (with a message) where moto is not installed.
    pub fn start() -> Option<Self> {
        let python = python();
        if !python.exists() || !script().exists() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "EC2 tests cannot run under CI: moto is not installed (../shared/testbed/install.sh)");
            #[allow(clippy::print_stderr)]
            {
                eprintln!("skipped: moto is not installed (../shared/testbed/install.sh installs it)");
            }
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("bash").arg(script()).arg("start").arg(dir.path()).output().expect("moto.sh");
        assert!(out.status.success(), "moto did not start: {}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Some(Self { url, dir, python })
    }

    /// Environment for tend (and anything else) to talk to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Run a boto3 snippet with `ec2` bound to a client of this server; returns its stdout
    /// parsed as JSON (the snippet prints one JSON document).
    pub fn boto(&self, code: &str) -> serde_json::Value {
        let prelude = format!(
            "import boto3, json, sys\nec2 = boto3.client('ec2', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n",
            self.url
        );
        let out = Command::new(&self.python).arg("-c").arg(format!("{prelude}{code}")).output().expect("python");
        assert!(out.status.success(), "boto3: {}\n{code}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("boto3 printed no JSON ({e}): {text}"))
    }

    /// Live (not terminated) instances, as `[{id, type, ami, state, tags: {k: v}}]`.
    pub fn instances(&self) -> Vec<serde_json::Value> {
        let v = self.boto(
            "out = []\nfor page in ec2.get_paginator('describe_instances').paginate():\n  for r in page['Reservations']:\n    for i in r['Instances']:\n      if i['State']['Name'] in ('terminated', 'shutting-down'): continue\n      out.append({'id': i['InstanceId'], 'type': i['InstanceType'], 'ami': i['ImageId'], 'state': i['State']['Name'], 'subnet': i.get('SubnetId'), 'private_ip': i.get('PrivateIpAddress'), 'tags': {t['Key']: t['Value'] for t in i.get('Tags', [])}})\nprint(json.dumps(out))",
        );
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(self.dir.path()).output();
    }
}
