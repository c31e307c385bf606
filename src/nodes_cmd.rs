//! `illumo nodes`.

use illumo_engine::NodeRegistry;
use serde_json::json;

pub fn print(registry: &NodeRegistry, as_json: bool) {
    if as_json {
        let list: Vec<_> = registry
            .factories()
            .map(|f| {
                json!({
                    "type": f.type_name(),
                    "aliases": f.aliases(),
                    "summary": f.summary(),
                    "settings": f.settings().iter().map(|s| json!({
                        "name": s.name, "kind": s.kind, "required": s.required, "about": s.about,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return;
    }
    for f in registry.factories() {
        println!("{}  {}", f.type_name(), f.summary());
        if !f.aliases().is_empty() {
            println!("  aliases: {}", f.aliases().join(", "));
        }
        for s in f.settings() {
            let required = if s.required { ", required" } else { "" };
            println!("  {:<16} ({}{required})  {}", s.name, s.kind, s.about);
        }
        println!();
    }
}
