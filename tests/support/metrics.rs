//! Reads lifeboat's /metrics with a real OpenMetrics parser.
#![allow(dead_code)]

use std::collections::BTreeMap;

use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub fn parse(text: &str) -> Vec<Sample> {
    let exposition: MetricsExposition<OpenMetricsType, OpenMetricsValue> =
        openmetrics_parser::openmetrics::parse_openmetrics(text).unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics: {e:?}\n{text}"));
    let mut out = Vec::new();
    for (family_name, family) in &exposition.families {
        for sample in family.iter_samples() {
            let labels: BTreeMap<String, String> = sample.get_labelset().expect("labels").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let (name, value) = match &sample.value {
                OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => (family_name.clone(), n.as_f64()),
                OpenMetricsValue::Counter(c) => (format!("{family_name}_total"), c.value.as_f64()),
                other => panic!("unexpected metric value {other:?}"),
            };
            out.push(Sample { name, labels, value });
        }
    }
    out.sort_by(|a, b| (&a.name, &a.labels).partial_cmp(&(&b.name, &b.labels)).unwrap());
    out
}

/// The value of the one sample of `name` whose labels include all of `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples.iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))).collect();
    assert!(matching.len() <= 1, "{name}{labels:?} matches {} samples: {matching:?}", matching.len());
    matching.first().map(|s| s.value)
}
