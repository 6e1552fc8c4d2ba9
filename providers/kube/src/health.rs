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

/// The health of one live object of `kind`.
pub(crate) fn of(kind: &str, obj: &J) -> Health {
    let generation = int(obj, "/metadata/generation");
    let observed = obj.pointer("/status/observedGeneration").and_then(J::as_i64);
    if let Some(seen) = observed
        && seen < generation
    {
        return progressing(format!("waiting for the controller to see generation {generation}"));
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
        assert!(matches!(of("Deployment", &d), Health::Progressing { .. }), "an old generation");
        d["status"]["observedGeneration"] = json!(2);
        assert_eq!(of("Deployment", &d), Health::Ready);
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-1\" has timed out progressing."}]);
        assert!(matches!(of("Deployment", &d), Health::Failed { message, .. } if message.contains("ProgressDeadlineExceeded")));
    }

    #[test]
    fn jobs_and_custom_resources_follow_their_conditions() {
        let j = json!({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}});
        assert!(matches!(of("Job", &j), Health::Failed { .. }));
        let w = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "message": "warming up"}]}});
        assert_eq!(of("Widget", &w), Health::Progressing { message: "Ready: warming up".into() });
        assert_eq!(of("ConfigMap", &json!({"data": {}})), Health::Ready);
    }
}
