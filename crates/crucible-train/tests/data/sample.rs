use std::collections::HashMap;

/// Counts words, ignoring case; digits like 2024 and 3.14 stay whole tokens here.
pub fn word_counts(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w.to_lowercase()).or_insert(0) += 1;
    }
    counts
}

fn main() {
    let c = word_counts("The the THE cat sat on 2024 mats, 3.14 times");
    println!("{:?} {}", c.get("the"), c.len());
}
