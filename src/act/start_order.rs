//! Which ready step starts first when more are ready than may run at once:
//! the one with the longest chain of steps still waiting on it, so the
//! critical path is not queued behind short side branches (longest-path-first
//! list scheduling; the chain counts steps, as their durations are unknown
//! before the run). Ties keep plan order.

use crate::plan::Plan;

/// Step indices, longest chain below first.
pub(super) fn critical_first(plan: &Plan) -> Vec<usize> {
    let index: std::collections::HashMap<&str, usize> = plan.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    // Needs come before their steps (Plan::validate): walking backwards, every
    // step's dependents have their chain length already.
    let mut chain = vec![1usize; plan.steps.len()];
    for (i, step) in plan.steps.iter().enumerate().rev() {
        for need in &step.needs {
            if let Some(&n) = index.get(need.as_str()) {
                chain[n] = chain[n].max(chain[i] + 1);
            }
        }
    }
    let mut order: Vec<usize> = (0..plan.steps.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(chain[i]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, ObjectRef, Step, WaitCondition};

    fn wait(id: &str, needs: &[&str]) -> Step {
        let action = Action::Wait { object: ObjectRef::pod("ns", id), until: WaitCondition::ServiceHasEndpoints, timeout_seconds: 1 };
        Step { id: id.into(), title: id.into(), action, needs: needs.iter().map(|n| n.to_string()).collect(), preconditions: vec![], recovery_source: None }
    }

    #[test]
    fn the_head_of_the_longest_chain_comes_first_and_ties_keep_plan_order() {
        let plan = Plan {
            steps: vec![wait("short", &[]), wait("long1", &[]), wait("long2", &["long1"]), wait("long3", &["long2"]), wait("other", &[]), wait("end", &["short", "long3"])],
            ..Plan::new("p", "t")
        };
        let ids: Vec<&str> = critical_first(&plan).into_iter().map(|i| plan.steps[i].id.as_str()).collect();
        assert_eq!(ids, vec!["long1", "long2", "short", "long3", "other", "end"]);
    }
}
