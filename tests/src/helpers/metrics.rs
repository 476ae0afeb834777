//! `/metrics` scrapes, parsed from the Prometheus text format.

use crate::Stack;

/// One scrape of a `/metrics` page: its samples, parsed from the Prometheus text format.
#[derive(Debug)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

/// One line of a scrape: `name{label="value",...} value`.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Metrics {
    /// Parses `text`; panics on a line that is not a sample, a comment or empty.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("not a sample: {line}"));
                let value = value
                    .parse()
                    .unwrap_or_else(|err| panic!("bad value in {line}: {err}"));
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
                    None => (series, Vec::new()),
                };
                Sample {
                    name: name.to_owned(),
                    labels,
                    value,
                }
            })
            .collect();
        Self { samples }
    }

    /// The sum of the samples called `name` that carry all of `labels` (0 when none does).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .filter(|sample| {
                labels.iter().all(|(k, v)| {
                    sample
                        .labels
                        .iter()
                        .any(|(key, value)| key == k && value == v)
                })
            })
            .map(|sample| sample.value)
            .sum()
    }

    /// Every label value of every sample.
    pub fn label_values(&self) -> impl Iterator<Item = &str> {
        self.samples
            .iter()
            .flat_map(|sample| sample.labels.iter().map(|(_, value)| value.as_str()))
    }
}

/// `a="x",b="y\"z"` (the part between the braces) into pairs, unescaping `\"`, `\\`, `\n`.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped)) => value.push(escaped),
                    None => {}
                },
                '"' => {
                    end = at + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_owned(), value));
        rest = &after[end..];
    }
    labels
}

impl<S> Stack<S> {
    /// Scrapes `url` (a `/metrics` page): 200, the Prometheus text format, parsed.
    pub async fn metrics(&self, url: String) -> Metrics {
        let response = self.http().get(&url).send().await.expect("GET /metrics");
        assert_eq!(response.status().as_u16(), 200, "{url}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain"),
            "{url}: {content_type}"
        );
        Metrics::parse(&response.text().await.expect("read /metrics"))
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn a_scrape_is_parsed_into_samples_with_their_labels() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\n\
                    x_total{route=\"/users/{email}\",method=\"PUT\"} 3\n\
                    x_total{route=\"/users\",method=\"POST\"} 2\n\
                    up 1\n";
        let metrics = Metrics::parse(text);
        assert_eq!(
            metrics.value("x_total", &[("route", "/users/{email}")]),
            3.0
        );
        assert_eq!(metrics.value("x_total", &[]), 5.0);
        assert_eq!(metrics.value("up", &[]), 1.0);
        assert_eq!(metrics.value("x_total", &[("method", "GET")]), 0.0);
    }
}
