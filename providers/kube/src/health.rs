//! Whether an applied object is ready, by the kstatus rules: the controller has seen the
//! latest generation, and the kind's own status says so.

use serde_json::Value as J;
use tend_provider::Health;

fn int(v: &J, p: &str) -> i64 {
    v.pointer(p).and_then(J::as_i64).unwrap_or(0)
}

fn condition<'a>(obj: &'a J, ty: &str) -> Option<&'a J> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c.get("type").and_then(J::as_str) == Some(ty))
}

fn is_true(c: Option<&J>) -> bool {
    c.and_then(|c| c.get("status")).and_then(J::as_str) == Some("True")
}

fn message(c: &J) -> String {
    let reason = c.get("reason").and_then(J::as_str).unwrap_or("");
    let msg = c.get("message").and_then(J::as_str).unwrap_or("");
    let ty = c.get("type").and_then(J::as_str).unwrap_or("");
    match (reason.is_empty(), msg.is_empty()) {
        (false, false) => format!("{ty}: {reason}: {msg}"),
        (false, true) => format!("{ty}: {reason}"),
        (true, false) => format!("{ty}: {msg}"),
        (true, true) => ty.to_string(),
    }
}

fn progressing(m: impl Into<String>) -> Health {
    Health::Progressing { message: m.into() }
}

/// A test of a live object from config: `PATH=VALUE`, the path in the notation of plans
/// (`status.phase`, `status.conditions[type=Synced].status`), the value compared as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Test {
    path: Vec<Step>,
    value: String,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    /// `[type=Ready]`: the element of a list whose `type` is `Ready`.
    Select(String, String),
    /// `[0]`.
    Index(usize),
}

impl Test {
    /// Parse `status.conditions[type=Ready].status=True`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("`{text}`: {why} (expected PATH=VALUE, e.g. `status.phase=Running` or `status.conditions[type=Synced].status=True`)");
        let (path, value) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
        // `=` inside a selector belongs to the path.
        let (path, value) = if path.contains('[') && !path.contains(']') {
            let end = text.find(']').ok_or_else(|| bad("an unclosed `[`"))?;
            let rest = &text[end + 1..];
            let (more, value) = rest.split_once('=').ok_or_else(|| bad("no `=` after the path"))?;
            (&text[..end + 1 + more.len()], value)
        } else {
            (path, value)
        };
        let mut steps = Vec::new();
        for part in path.split('.') {
            let (key, mut sel) = part.split_once('[').map_or((part, ""), |(k, s)| (k, s));
            if !key.is_empty() {
                steps.push(Step::Key(key.to_string()));
            } else if sel.is_empty() {
                return Err(bad("an empty path segment"));
            }
            while !sel.is_empty() {
                let (inner, rest) = sel.split_once(']').ok_or_else(|| bad("an unclosed `[`"))?;
                steps.push(match inner.split_once('=') {
                    Some((k, v)) => Step::Select(k.to_string(), v.to_string()),
                    None => Step::Index(inner.parse().map_err(|_| bad("a selector is `[KEY=VALUE]` or `[INDEX]`"))?),
                });
                sel = rest.strip_prefix('[').unwrap_or(rest);
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(bad("text after `]`"));
                }
            }
        }
        if steps.is_empty() {
            return Err(bad("an empty path"));
        }
        Ok(Self { path: steps, value: value.to_string(), text: text.to_string() })
    }

    fn holds(&self, obj: &J) -> bool {
        let mut cur = obj;
        for step in &self.path {
            let next = match step {
                Step::Key(k) => cur.get(k),
                Step::Index(i) => cur.get(*i),
                Step::Select(k, v) => cur.as_array().and_then(|a| a.iter().find(|e| e.get(k).and_then(J::as_str) == Some(v.as_str()))),
            };
            let Some(n) = next else { return false };
            cur = n;
        }
        match cur {
            J::String(s) => *s == self.value,
            J::Number(n) => n.to_string() == self.value,
            J::Bool(b) => self.value == if *b { "true" } else { "false" },
            _ => false,
        }
    }
}

/// A kind's health by the rule its set gives: ready when `ready` holds, failed when `failed`
/// does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub ready: Test,
    pub failed: Option<Test>,
}

/// The health of one live object of `kind`, by `rule` when its set gives one.
pub(crate) fn of(kind: &str, obj: &J, rule: Option<&Rule>) -> Health {
    let generation = int(obj, "/metadata/generation");
    let observed = obj.pointer("/status/observedGeneration").and_then(J::as_i64);
    if let Some(seen) = observed
        && seen < generation
    {
        return progressing(format!("waiting for the controller to see generation {generation}"));
    }
    if let Some(rule) = rule {
        if let Some(f) = rule.failed.as_ref().filter(|f| f.holds(obj)) {
            return Health::Failed { message: format!("{} (the set's health rule for {kind})", f.text), hint: None };
        }
        return if rule.ready.holds(obj) { Health::Ready } else { progressing(format!("waiting for {}", rule.ready.text)) };
    }
    match kind {
        "Deployment" => {
            if let Some(c) = condition(obj, "Progressing")
                && c.get("reason").and_then(J::as_str) == Some("ProgressDeadlineExceeded")
            {
                return Health::Failed { message: message(c), hint: Some("`kubectl describe` the Deployment and its pods".into()) };
            }
            if observed.is_none() && generation > 0 {
                return progressing("waiting for the controller");
            }
            let want = obj.pointer("/spec/replicas").and_then(J::as_i64).unwrap_or(1);
            let updated = int(obj, "/status/updatedReplicas");
            let ready = int(obj, "/status/readyReplicas");
            let available = int(obj, "/status/availableReplicas");
            let total = int(obj, "/status/replicas");
            if updated < want {
                return progressing(format!("{updated}/{want} replicas updated"));
            }
            if total > updated {
                return progressing(format!("{} old replicas pending termination", total - updated));
            }
            if ready < want || available < want {
                return progressing(format!("{ready}/{want} ready, {available}/{want} available"));
            }
            Health::Ready
        }
        "StatefulSet" => {
            if observed.is_none() && generation > 0 {
                return progressing("waiting for the controller");
            }
            let want = obj.pointer("/spec/replicas").and_then(J::as_i64).unwrap_or(1);
            let ready = int(obj, "/status/readyReplicas");
            let updated = int(obj, "/status/updatedReplicas");
            let current = obj.pointer("/status/currentRevision");
            if ready < want {
                return progressing(format!("{ready}/{want} ready"));
            }
            if current.is_some() && current != obj.pointer("/status/updateRevision") && updated < want {
                return progressing(format!("{updated}/{want} updated to the new revision"));
            }
            Health::Ready
        }
        "DaemonSet" => {
            if observed.is_none() && generation > 0 {
                return progressing("waiting for the controller");
            }
            let want = int(obj, "/status/desiredNumberScheduled");
            let updated = int(obj, "/status/updatedNumberScheduled");
            let available = int(obj, "/status/numberAvailable");
            if updated < want || available < want {
                return progressing(format!("{available}/{want} available, {updated}/{want} updated"));
            }
            Health::Ready
        }
        "Job" => {
            if let Some(c) = condition(obj, "Failed").filter(|c| is_true(Some(c))) {
                return Health::Failed { message: message(c), hint: Some("`kubectl logs` the Job's pods".into()) };
            }
            if is_true(condition(obj, "Complete")) {
                return Health::Ready;
            }
            progressing(format!("{} succeeded, {} active", int(obj, "/status/succeeded"), int(obj, "/status/active")))
        }
        "PersistentVolumeClaim" => match obj.pointer("/status/phase").and_then(J::as_str) {
            Some("Bound") => Health::Ready,
            Some("Lost") => Health::Failed { message: "the claim lost its volume".into(), hint: None },
            p => progressing(format!("phase {}", p.unwrap_or("unknown"))),
        },
        "CustomResourceDefinition" => {
            if is_true(condition(obj, "Established")) {
                Health::Ready
            } else {
                progressing("waiting to be Established")
            }
        }
        "Service" => {
            if obj.pointer("/spec/type").and_then(J::as_str) == Some("LoadBalancer")
                && obj.pointer("/status/loadBalancer/ingress").and_then(J::as_array).is_none_or(Vec::is_empty)
            {
                return progressing("waiting for a load balancer address");
            }
            Health::Ready
        }
        "Pod" => match obj.pointer("/status/phase").and_then(J::as_str) {
            Some("Succeeded") => Health::Ready,
            Some("Failed") => Health::Failed { message: "the pod failed".into(), hint: None },
            Some("Running") if is_true(condition(obj, "Ready")) => Health::Ready,
            p => progressing(format!("phase {}", p.unwrap_or("Pending"))),
        },
        _ => {
            if let Some(c) = condition(obj, "Stalled").filter(|c| is_true(Some(c))) {
                return Health::Failed { message: message(c), hint: None };
            }
            match condition(obj, "Ready") {
                Some(c) if is_true(Some(c)) => Health::Ready,
                Some(c) => progressing(message(c)),
                None => Health::Ready,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_deployment_is_ready_when_every_replica_is_updated_and_available() {
        let mut d = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}});
        assert!(matches!(of("Deployment", &d, None), Health::Progressing { .. }), "an old generation");
        d["status"]["observedGeneration"] = json!(2);
        assert_eq!(of("Deployment", &d, None), Health::Ready);
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-1\" has timed out progressing."}]);
        assert!(matches!(of("Deployment", &d, None), Health::Failed { message, .. } if message.contains("ProgressDeadlineExceeded")));
    }

    #[test]
    fn jobs_and_custom_resources_follow_their_conditions() {
        let j = json!({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}});
        assert!(matches!(of("Job", &j, None), Health::Failed { .. }));
        let w = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "message": "warming up"}]}});
        assert_eq!(of("Widget", &w, None), Health::Progressing { message: "Ready: warming up".into() });
        assert_eq!(of("ConfigMap", &json!({"data": {}}), None), Health::Ready);
    }

    #[test]
    fn a_rule_from_config_decides_by_paths_and_conditions() {
        let rule =
            Rule { ready: Test::parse("status.conditions[type=Synced].status=True").unwrap(), failed: Some(Test::parse("status.phase=Broken").unwrap()) };
        let mut w = json!({"metadata": {"generation": 1}, "status": {"phase": "Pending", "conditions": [{"type": "Synced", "status": "False"}]}});
        assert_eq!(of("Widget", &w, Some(&rule)), Health::Progressing { message: "waiting for status.conditions[type=Synced].status=True".into() });
        w["status"]["conditions"][0]["status"] = json!("True");
        assert_eq!(of("Widget", &w, Some(&rule)), Health::Ready);
        w["status"]["phase"] = json!("Broken");
        assert!(matches!(of("Widget", &w, Some(&rule)), Health::Failed { message, .. } if message.starts_with("status.phase=Broken")));
        let count = Rule { ready: Test::parse("status.replicas[0]=3").unwrap(), failed: None };
        assert_eq!(of("Widget", &json!({"status": {"replicas": [3]}}), Some(&count)), Health::Ready);
        for bad in ["status.phase", "status.conditions[type=Ready.status=True", "=x", "a.[x].b=1"] {
            assert!(Test::parse(bad).is_err(), "{bad}");
        }
    }
}
