//! The served GraphQL schema against the two documents that fix it: the
//! committed `schema.graphql` (equal, so that every API change shows in
//! review) and the public contract `contract.graphql` (every type, field,
//! argument, default and enum value of it served as it says).

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

fn file(name: &str) -> PathBuf {
    // cargo's run-time variable first: a test binary reused from another clone must read this clone's files.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(dir).join(name)
}

#[test]
fn the_served_schema_is_the_committed_one() {
    let served = gateway::api::sdl();
    let path = file("schema.graphql");
    if std::env::var_os("MARIONETTE_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &served).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != served {
        let first = committed.lines().zip(served.lines()).position(|(a, b)| a != b).unwrap_or(committed.lines().count().min(served.lines().count()));
        panic!(
            "the served schema differs from {} at line {} (committed: {:?}, served: {:?}). If the change is meant, write the file with \
             MARIONETTE_WRITE_SCHEMA=1 cargo test -p gateway --test schema, and review it",
            path.display(),
            first + 1,
            committed.lines().nth(first),
            served.lines().nth(first)
        );
    }
}

/// Every member of every type by name: a field's `(arguments): type`, an
/// input field's `type = default`, an enum value's nothing.
fn members(sdl: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let document = async_graphql::parser::parse_schema(sdl).expect("the schema parses");
    let mut types = BTreeMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(definition) = definition else { continue };
        let definition = definition.node;
        let input = |value: &async_graphql::parser::types::InputValueDefinition| {
            let default = value.default_value.as_ref().map(|d| format!(" = {}", d.node)).unwrap_or_default();
            format!("{}: {}{default}", value.name.node, value.ty.node)
        };
        let list: BTreeMap<String, String> = match &definition.kind {
            TypeKind::Object(object) => object
                .fields
                .iter()
                .map(|field| {
                    let arguments: Vec<String> = field.node.arguments.iter().map(|a| input(&a.node)).collect();
                    (field.node.name.node.to_string(), format!("({}): {}", arguments.join(", "), field.node.ty.node))
                })
                .collect(),
            TypeKind::InputObject(object) => object.fields.iter().map(|field| (field.node.name.node.to_string(), input(&field.node))).collect(),
            TypeKind::Enum(enumeration) => enumeration.values.iter().map(|value| (value.node.value.node.to_string(), String::new())).collect(),
            _ => BTreeMap::new(),
        };
        types.insert(definition.name.node.to_string(), list);
    }
    types
}

#[test]
fn every_operation_type_and_field_of_the_contract_is_served_as_it_says() {
    let contract = members(&std::fs::read_to_string(file("contract.graphql")).unwrap());
    let served = members(&gateway::api::sdl());
    assert!(contract.len() > 20 && contract.contains_key("Mutation"), "the contract was read");
    let mut differences = Vec::new();
    for (name, wanted) in &contract {
        let Some(have) = served.get(name) else {
            differences.push(format!("the type {name} is not served"));
            continue;
        };
        for (member, signature) in wanted {
            let Some(served_signature) = have.get(member) else {
                differences.push(format!("{name}.{member} is not served"));
                continue;
            };
            // Served fields may take more arguments than the contract names, never fewer or other.
            let (wanted_arguments, wanted_type) = split(signature);
            let (served_arguments, served_type) = split(served_signature);
            if served_type != wanted_type {
                differences.push(format!("{name}.{member} is served as {served_type}, the contract says {wanted_type}"));
            }
            for argument in wanted_arguments.iter().filter(|argument| !served_arguments.contains(argument)) {
                differences.push(format!("{name}.{member}: the contract's argument {argument} is served as {served_signature}"));
            }
        }
    }
    assert!(differences.is_empty(), "the served schema breaks the contract:\n{}", differences.join("\n"));
}

/// (arguments, type) of a member's signature; an input field's or enum value's is all type.
fn split(signature: &str) -> (Vec<String>, String) {
    match signature.strip_prefix('(') {
        Some(rest) => {
            let (arguments, ty) = rest.rsplit_once("): ").unwrap();
            (arguments.split(", ").filter(|a| !a.is_empty()).map(str::to_string).collect(), ty.to_string())
        }
        None => (Vec::new(), signature.to_string()),
    }
}
