//! Parsed documents kept by their text: clients send the same few documents
//! (a bot's placeOrder, the console's queries) with new variables or
//! literals, and parsing one was about a tenth of the gateway's CPU per order
//! (BENCHMARKS.md, Gateway). Validation still runs on every request: it
//! depends on the variables.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};
use lru::LruCache;

/// Distinct documents kept, least recently used dropped first: far more than
/// the API's clients send, so that one client's stream of unique documents
/// only evicts, and costs nothing but its own parsing.
pub const DOCUMENTS_MAX: usize = 512;
/// Longer documents are parsed each time: kept, a few of them would hold
/// most of the cache's memory.
pub const DOCUMENT_BYTES_MAX: usize = 4096;

#[derive(Clone)]
pub struct ParseCache {
    documents: Arc<Mutex<LruCache<String, ExecutableDocument>>>,
    hits: Arc<AtomicU64>,
}

impl Default for ParseCache {
    fn default() -> Self {
        let capacity = NonZeroUsize::new(DOCUMENTS_MAX).unwrap_or(NonZeroUsize::MIN);
        ParseCache { documents: Arc::new(Mutex::new(LruCache::new(capacity))), hits: Arc::default() }
    }
}

impl ParseCache {
    /// How many documents are kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// How many requests found their document here.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, ExecutableDocument>> {
        // A panic while holding the lock leaves a cache that is still whole.
        self.documents.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ExtensionFactory for ParseCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Extension for ParseCache {
    async fn parse_query(&self, ctx: &ExtensionContext<'_>, query: &str, variables: &Variables, next: NextParseQuery<'_>) -> ServerResult<ExecutableDocument> {
        if let Some(document) = self.lock().get(query) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(document.clone());
        }
        // Only a document that parsed and passed the depth and directive
        // limits (checked inside `next`) is kept; errors are found again.
        let document = next.run(ctx, query, variables).await?;
        if query.len() <= DOCUMENT_BYTES_MAX {
            self.lock().put(query.to_string(), document.clone());
        }
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Request, Schema, Variables};
    use proptest::prelude::*;

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn double(&self, n: i32) -> i32 {
            n.saturating_mul(2)
        }

        async fn nested(&self) -> Query {
            Query
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("a runtime starts").block_on(future)
    }

    type TestSchema = Schema<Query, EmptyMutation, EmptySubscription>;

    fn schema(cache: Option<ParseCache>) -> TestSchema {
        let builder = Schema::build(Query, EmptyMutation, EmptySubscription).limit_depth(4).limit_directives(2);
        match cache {
            Some(cache) => builder.extension(cache),
            None => builder,
        }
        .finish()
    }

    /// Documents of every kind: valid, valid with variables, unparseable,
    /// too deep, too many directives, unknown fields, and one too long to keep.
    fn documents() -> Vec<String> {
        vec![
            "{ double(n: 2) }".to_string(),
            "query($n: Int!) { double(n: $n) }".to_string(),
            "{ double(n: 2) ".to_string(),
            "{ nested { nested { nested { nested { double(n: 1) } } } } }".to_string(),
            "{ double(n: 1) @skip(if: false) @include(if: true) @skip(if: false) }".to_string(),
            "{ triple(n: 2) }".to_string(),
            format!("{{ double(n: 3) {} }}", "#".repeat(DOCUMENT_BYTES_MAX)),
        ]
    }

    fn variables(choice: u8) -> Variables {
        match choice % 3 {
            0 => Variables::from_json(serde_json::json!({ "n": 21 })),
            1 => Variables::from_json(serde_json::json!({ "n": "not a number" })),
            _ => Variables::default(),
        }
    }

    async fn answer(schema: &TestSchema, document: &str, variables: Variables) -> serde_json::Value {
        serde_json::to_value(schema.execute(Request::new(document).variables(variables)).await).expect("a response serializes")
    }

    #[test]
    fn a_document_is_parsed_once_and_its_errors_every_time() {
        block_on(async {
            let cache = ParseCache::default();
            let cached = schema(Some(cache.clone()));
            let valid = "query($n: Int!) { double(n: $n) }";
            for n in [1, 2, 3] {
                let answer = answer(&cached, valid, Variables::from_json(serde_json::json!({ "n": n }))).await;
                assert_eq!(answer["data"]["double"], n * 2);
            }
            assert_eq!(cache.len(), 1, "three requests of one document keep it once");
            assert_eq!(cache.hits(), 2, "and parse it once");
            // Kept, but validated again with each request's variables.
            let wrong = answer(&cached, valid, Variables::from_json(serde_json::json!({ "n": "two" }))).await;
            assert!(wrong["errors"][0]["message"].as_str().is_some_and(|m| m.contains("Invalid value")), "{wrong}");
            for rejected in ["{ double(n: 2) ", "{ nested { nested { nested { nested { double(n: 1) } } } } }"] {
                for _ in 0..2 {
                    let answer = answer(&cached, rejected, Variables::default()).await;
                    assert!(answer["errors"].as_array().is_some_and(|e| !e.is_empty()), "{rejected}: {answer}");
                }
            }
            // The depth limit is validation's: the deep document parsed, is
            // kept, and is refused each time all the same.
            assert_eq!(cache.len(), 2, "a document that fails to parse is not kept");
            assert_eq!(cache.hits(), 3 + 1, "the deep one found the second time");
        });
    }

    #[test]
    fn the_cache_keeps_at_most_its_capacity() {
        block_on(async {
            let cache = ParseCache::default();
            let cached = schema(Some(cache.clone()));
            for n in 0..DOCUMENTS_MAX + 10 {
                let answer = answer(&cached, &format!("{{ double(n: {n}) }}"), Variables::default()).await;
                assert_eq!(answer["data"]["double"], 2 * n);
            }
            assert_eq!(cache.len(), DOCUMENTS_MAX);
        });
    }

    proptest! {
        /// Whatever the order of documents and variables, the answers are
        /// those of a schema that parses every request.
        #[test]
        fn answers_are_those_without_the_cache(requests in proptest::collection::vec((0..7usize, any::<u8>()), 1..40)) {
            block_on(async {
                let (cached, plain) = (schema(Some(ParseCache::default())), schema(None));
                let documents = documents();
                for (document, choice) in requests {
                    let document = &documents[document];
                    let with_cache = answer(&cached, document, variables(choice)).await;
                    let without = answer(&plain, document, variables(choice)).await;
                    prop_assert_eq!(with_cache, without, "{}", document);
                }
                Ok(())
            })?;
        }
    }
}
