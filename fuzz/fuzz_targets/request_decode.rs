//! `Request::decode` on arbitrary bytes: never panics, and whatever it
//! accepts encodes again to a datagram that decodes to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sendfiled_client::protocol::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::decode(data) {
        let bytes = req
            .encode()
            .unwrap_or_else(|e| panic!("{req:?} decoded but does not encode: {e:?}"));
        let again = Request::decode(&bytes)
            .unwrap_or_else(|e| panic!("{req:?} re-encoded does not decode: {e:?}"));
        assert_eq!(again, req);
        // Errors carry an errno the daemon can answer with.
    } else if let Err(e) = Request::decode(data) {
        assert!(e.errno() > 0);
    }
});
