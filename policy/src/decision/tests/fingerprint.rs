//! The data digest and the source marker.

use super::*;

#[test]
fn digest_counts_string_data_like_data_and_never_shows_values() {
    let d = digest(&secret("a", "s").data("k", b"v1").build());
    assert!(d.starts_with("sha256:") && d.len() == 7 + 64, "{d}");
    assert_eq!(d, digest(&secret("a", "s").string_data("k", "v1").build()));
    // stringData overwrites data, like the API server merges it.
    assert_eq!(
        d,
        digest(
            &secret("a", "s")
                .data("k", b"old")
                .string_data("k", "v1")
                .build()
        )
    );
    assert_ne!(d, digest(&secret("a", "s").data("k", b"v2").build()));
    assert_ne!(d, digest(&secret("a", "s").data("k2", b"v1").build()));
    // Length prefixes keep key/value boundaries apart.
    assert_ne!(
        digest(&secret("a", "s").data("ab", b"c").build()),
        digest(&secret("a", "s").data("a", b"bc").build())
    );
    // Metadata does not count.
    assert_eq!(
        d,
        digest(&secret("b", "t").label("x", "y").data("k", b"v1").build())
    );
    assert_ne!(digest(&secret("a", "s").build()), d);
}

#[test]
fn a_source_marker_names_the_hub_version_and_nothing_of_its_values() {
    let with = |uid: Option<&str>, rv: Option<&str>, value: &[u8]| {
        let mut s = hub("repo").data("k", value).build();
        s.metadata.uid = uid.map(str::to_owned);
        s.metadata.resource_version = rv.map(str::to_owned);
        s
    };
    let a = with(Some("u-1"), Some("7"), b"hunter2");
    assert_eq!(source_marker(&a).as_deref(), Some("u-1/7"));
    // The values do not count; the version does.
    assert_eq!(
        source_marker(&a),
        source_marker(&with(Some("u-1"), Some("7"), b"other"))
    );
    assert_ne!(
        source_marker(&a),
        source_marker(&with(Some("u-1"), Some("8"), b"hunter2"))
    );
    assert_ne!(
        source_marker(&a),
        source_marker(&with(Some("u-2"), Some("7"), b"hunter2"))
    );
    assert_eq!(source_marker(&with(None, Some("7"), b"x")), None);
    assert_eq!(source_marker(&with(Some("u-1"), Some(""), b"x")), None);
}
