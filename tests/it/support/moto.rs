//! The moto EC2 API server (installed by tests/testbed/install.sh), one per test, stopped by PID when the test ends; and an
//! independent client (boto3, in the testbed's venv) to set up and check what the API holds.

use std::path::PathBuf;
use std::process::{Child, Command};

use super::need::{Need, need, testbed, testbed_python};

/// A running moto server.
pub struct Moto {
    pub url: String,
    child: Child,
    log: tempfile::NamedTempFile,
    python: PathBuf,
}

impl Moto {
    /// Start one (`moto_server` on a free port, stopped by PID on drop); the test must be listed
    /// as needing `moto` (see [`need`]).
    pub fn start() -> Self {
        need(&[Need::Moto]);
        let port = super::git::free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(testbed().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_AMI_VALIDATION", "1")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "1")
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("moto_server starts");
        let mut moto = Self { url: format!("http://127.0.0.1:{port}"), child, log, python: testbed_python() };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited ({status}): {}", fs_err::read_to_string(moto.log.path()).unwrap_or_default());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("moto_server did not listen on {port}: {}", fs_err::read_to_string(moto.log.path()).unwrap_or_default());
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
