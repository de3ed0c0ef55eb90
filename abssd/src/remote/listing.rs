//! Paging through a listing without trusting the server to end it. A
//! listing goes on while the server says `IsTruncated` and hands a
//! continuation token; a hostile or broken one can do that forever. So a
//! listing stops with an error when a token comes back a second time, when a
//! page that says there is more holds no object (or no token), or after
//! [`MAX_PAGES`] pages.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use super::s3::{ObjectInfo, S3, S3Error, S3ErrorKind, S3Result};

/// Most pages one listing reads: a million keys (the most `remote.ls` and
/// reconcile read) at a fifth of S3's 1000 a page.
pub const MAX_PAGES: usize = 5_000;
/// The longest continuation token followed (S3's are a few hundred bytes).
const MAX_TOKEN: usize = 8 << 10;

/// The pages of one listing, read on demand.
#[derive(Debug)]
pub struct Pages<'a> {
    s3: &'a S3,
    prefix: String,
    /// The token of the next page; `None` before the first page and at the end.
    after: Option<String>,
    /// Digests of the tokens followed: a repeat is a loop.
    seen: HashSet<[u8; 32]>,
    read: usize,
    done: bool,
}

impl<'a> Pages<'a> {
    /// The listing of the keys under `prefix`.
    pub fn new(s3: &'a S3, prefix: &str) -> Pages<'a> {
        Pages {
            s3,
            prefix: prefix.to_owned(),
            after: None,
            seen: HashSet::new(),
            read: 0,
            done: false,
        }
    }

    /// The next page's objects, `None` after the last page.
    pub fn next_page(&mut self) -> S3Result<Option<Vec<ObjectInfo>>> {
        if self.done {
            return Ok(None);
        }
        if self.read >= MAX_PAGES {
            return Err(self.odd(&format!("it did not end after {MAX_PAGES} pages")));
        }
        let page = self.s3.list(&self.prefix, self.after.as_deref())?;
        self.read += 1;
        match page.next {
            None if page.truncated => {
                return Err(self.odd("a page said there is more but gave no continuation token"));
            }
            None => self.done = true,
            Some(_) if page.objects.is_empty() => {
                return Err(self.odd("a page said there is more but held no object"));
            }
            Some(token) => {
                if token.len() > MAX_TOKEN {
                    return Err(self.odd("a continuation token was too long"));
                }
                if !self.seen.insert(Sha256::digest(&token).into()) {
                    return Err(self.odd("a continuation token came back a second time"));
                }
                self.after = Some(token);
            }
        }
        Ok(Some(page.objects))
    }

    fn odd(&mut self, why: &str) -> S3Error {
        self.done = true;
        S3Error {
            kind: S3ErrorKind::Server,
            status: None,
            code: None,
            message: format!(
                "listing {:?} on remote {:?}: the server pages oddly ({why}); the listing was stopped",
                self.prefix,
                self.s3.name()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::fake::{self, Fake};
    use crate::remote::s3::Patience;

    /// A page: `keys` as its objects, truncated with `token` when given.
    fn page(keys: &[&str], truncated: bool, token: Option<&str>) -> String {
        let mut xml = format!("<ListBucketResult><IsTruncated>{truncated}</IsTruncated>");
        if let Some(t) = token {
            xml.push_str(&format!(
                "<NextContinuationToken>{t}</NextContinuationToken>"
            ));
        }
        for k in keys {
            xml.push_str(&format!(
                "<Contents><Key>{k}</Key><Size>1</Size><ETag>\"e\"</ETag></Contents>"
            ));
        }
        xml + "</ListBucketResult>"
    }

    /// A server answering the `n`th listing with `answer(n)`, and after
    /// `stop` requests an honest last page (so that a listing without the
    /// checks ends, and its test fails instead of hanging).
    fn server(stop: usize, answer: fn(usize) -> String) -> Fake {
        fake::serve(move |n, _, stream| {
            let body = if n >= stop {
                page(&["p/last"], false, None)
            } else {
                answer(n)
            };
            fake::reply(stream, 200, &body);
        })
    }

    /// Every page until the end or the first error.
    fn read_all(fake: &Fake) -> (Vec<String>, Option<S3Error>) {
        let s3 = fake.client(Patience::OPERATION);
        let mut pages = Pages::new(&s3, "p/");
        let mut keys = Vec::new();
        loop {
            match pages.next_page() {
                Ok(Some(objects)) => keys.extend(objects.into_iter().map(|o| o.key)),
                Ok(None) => return (keys, None),
                Err(e) => {
                    assert!(
                        matches!(pages.next_page(), Ok(None)),
                        "a failed listing stays ended"
                    );
                    return (keys, Some(e));
                }
            }
        }
    }

    #[test]
    fn an_honest_listing_reads_every_page() {
        let fake = server(2, |n| {
            page(&[&format!("p/{n}")], true, Some(&format!("t{n}")))
        });
        let (keys, error) = read_all(&fake);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(keys, ["p/0", "p/1", "p/last"]);
        assert_eq!(fake.count(), 3);
    }

    #[test]
    fn a_truncated_empty_page_with_the_same_token_ends_the_listing() {
        let fake = server(50, |_| page(&[], true, Some("same")));
        let (keys, error) = read_all(&fake);
        let e = error.expect("an error, not an endless listing");
        assert_eq!(e.kind, S3ErrorKind::Server);
        assert!(e.message.contains("held no object"), "{e}");
        assert!(keys.is_empty());
        assert_eq!(fake.count(), 1);
    }

    #[test]
    fn a_token_that_comes_back_ends_the_listing() {
        let fake = server(50, |n| page(&[&format!("p/{n}")], true, Some("same")));
        let (keys, error) = read_all(&fake);
        let e = error.expect("an error, not an endless listing");
        assert!(e.message.contains("a second time"), "{e}");
        assert_eq!(keys, ["p/0"], "the failed page's objects are not handed on");
        assert_eq!(fake.count(), 2);
    }

    #[test]
    fn a_truncated_page_without_a_token_is_not_taken_for_the_end() {
        let fake = server(50, |n| page(&[&format!("p/{n}")], true, None));
        let (_, error) = read_all(&fake);
        let e = error.expect("a listing cut short is not complete");
        assert!(e.message.contains("no continuation token"), "{e}");
        assert_eq!(fake.count(), 1);
    }

    #[test]
    fn fresh_tokens_without_end_stop_at_the_page_cap() {
        let fake = server(MAX_PAGES + 10, |n| {
            page(&[&format!("p/{n}")], true, Some(&format!("t{n}")))
        });
        let (keys, error) = read_all(&fake);
        let e = error.expect("an error at the cap");
        assert!(e.message.contains("did not end"), "{e}");
        assert_eq!(keys.len(), MAX_PAGES);
        assert_eq!(fake.count(), MAX_PAGES);
    }
}
