//! The blob protocol `/swarmlabel/blob/1.0.0`: fetch a content-addressed blob, or a dataset's
//! signed manifest root, from a peer.
//!
//! One request per stream. A request is 33 bytes: a kind (`1` blob by its BLAKE3 hash, `2` signed
//! root by dataset id) and the 32-byte hash; the requester then closes its write side. A response is
//! a status byte (`0` found, `1` not found, `2` refused: the request came over a relayed connection
//! or the peer is shedding load) followed, when found, by a `u64` little-endian length and that
//! many bytes. Sizes are bounded on both sides; the receiver hashes what it got before it trusts
//! it.

use std::io;

use libp2p::StreamProtocol;

use super::codec::Frame;

use swarmlabel_store::dataset::manifest::MAX_SAMPLE_BYTES;
use swarmlabel_store::store::BlobId;

/// The protocol id.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/swarmlabel/blob/1.0.0");
/// Bytes of a request.
pub const REQUEST_LEN: usize = 33;
/// Bytes of a blob in a response at most: the largest sample (64 MiB; manifest pages and roots
/// are smaller).
pub const MAX_BLOB_LEN: u64 = MAX_SAMPLE_BYTES;

/// What is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Request {
    /// The blob with this hash.
    Blob(BlobId),
    /// The blob with this hash, whose exact size in bytes the requester knows (from a manifest
    /// or a model update). The same request on the wire as [`Request::Blob`], which is what the
    /// serving side decodes; the requester reads no more of the response than the size.
    SizedBlob(BlobId, u64),
    /// The signed root of the dataset with this id.
    Root(BlobId),
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The bytes asked for (unverified until the receiver hashes them).
    Found(Vec<u8>),
    /// The peer does not have it.
    NotFound,
    /// The peer will not serve it on this connection (relayed) or now (overloaded).
    Refused,
}

/// Bytes of a response at most: status, length and the largest blob.
pub const MAX_RESPONSE_LEN: usize = 9 + MAX_BLOB_LEN as usize;

/// The codec of the blob protocol.
pub type Codec = super::codec::Codec<Request, Response>;

/// The blob protocol's codec with its limits.
pub fn codec() -> Codec {
    Codec::new(REQUEST_LEN, MAX_RESPONSE_LEN)
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Frame for Request {
    fn to_frame(&self) -> io::Result<Vec<u8>> {
        Ok(encode_request(self).to_vec())
    }

    fn from_frame(frame: Vec<u8>) -> io::Result<Self> {
        decode_request(&frame)
    }

    fn response_limit(&self) -> Option<usize> {
        match *self {
            Request::SizedBlob(_, size) => usize::try_from(size).ok()?.checked_add(9),
            Request::Blob(_) | Request::Root(_) => None,
        }
    }
}

impl Frame for Response {
    fn to_frame(&self) -> io::Result<Vec<u8>> {
        Ok(match self {
            Response::Found(bytes) => {
                if bytes.len() as u64 > MAX_BLOB_LEN {
                    return Err(invalid("a blob over the size limit"));
                }
                let mut out = Vec::with_capacity(9 + bytes.len());
                out.push(0);
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(bytes);
                out
            }
            Response::NotFound => vec![1],
            Response::Refused => vec![2],
        })
    }

    fn from_frame(mut frame: Vec<u8>) -> io::Result<Self> {
        match frame.first() {
            Some(0) if frame.len() >= 9 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&frame[1..9]);
                if u64::from_le_bytes(len) != (frame.len() - 9) as u64 {
                    return Err(invalid("a blob response whose length does not match"));
                }
                // In place: no second buffer of the blob's size.
                frame.drain(..9);
                Ok(Response::Found(frame))
            }
            Some(1) if frame.len() == 1 => Ok(Response::NotFound),
            Some(2) if frame.len() == 1 => Ok(Response::Refused),
            Some(0..=2) => Err(invalid("a malformed blob response")),
            _ => Err(invalid("unknown blob response status")),
        }
    }
}

/// The 33 bytes of a request.
pub fn encode_request(req: &Request) -> [u8; REQUEST_LEN] {
    let (kind, id) = match req {
        Request::Blob(id) | Request::SizedBlob(id, _) => (1, id),
        Request::Root(id) => (2, id),
    };
    let mut out = [0u8; REQUEST_LEN];
    out[0] = kind;
    out[1..].copy_from_slice(&id.0);
    out
}

/// Decodes a request; anything but exactly 33 bytes of a known kind is an error.
pub fn decode_request(buf: &[u8]) -> io::Result<Request> {
    if buf.len() != REQUEST_LEN {
        return Err(invalid("a blob request is exactly 33 bytes"));
    }
    let id = BlobId(
        buf[1..]
            .try_into()
            .map_err(|_| invalid("a blob request is exactly 33 bytes"))?,
    );
    match buf[0] {
        1 => Ok(Request::Blob(id)),
        2 => Ok(Request::Root(id)),
        _ => Err(invalid("unknown blob request kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_malformed_ones_are_errors() {
        for req in [
            Request::Blob(BlobId([7; 32])),
            Request::Root(BlobId([9; 32])),
        ] {
            assert_eq!(decode_request(&encode_request(&req)).unwrap(), req);
        }
        assert!(decode_request(&[1; 32]).is_err());
        assert!(decode_request(&[1; 34]).is_err());
        assert!(decode_request(&[3; 33]).is_err());
        assert!(decode_request(&[]).is_err());
    }

    async fn read(bytes: &[u8]) -> io::Result<Response> {
        use libp2p::request_response::Codec as _;
        codec()
            .read_response(&PROTOCOL, &mut futures::io::Cursor::new(bytes.to_vec()))
            .await
    }

    async fn write(response: Response) -> Vec<u8> {
        use libp2p::request_response::Codec as _;
        let mut out = futures::io::Cursor::new(Vec::new());
        codec()
            .write_response(&PROTOCOL, &mut out, response)
            .await
            .unwrap();
        out.into_inner()
    }

    /// Why 5 of issue 14: a provider's answer used to be read up to the protocol's 64 MiB
    /// whatever the manifest said the blob weighs. A request of a known size reads no further.
    #[tokio::test]
    async fn a_sized_request_reads_no_more_of_the_answer_than_its_blob() {
        use libp2p::request_response::Codec as _;
        let id = BlobId([1; 32]);
        let mut codec = codec();
        let mut sent = futures::io::Cursor::new(Vec::new());
        codec
            .write_request(&PROTOCOL, &mut sent, Request::SizedBlob(id, 100))
            .await
            .unwrap();
        assert_eq!(
            sent.into_inner(),
            encode_request(&Request::Blob(id)),
            "the same request on the wire"
        );
        let long = write(Response::Found(vec![0; 101])).await;
        let error = codec
            .read_response(&PROTOCOL, &mut futures::io::Cursor::new(long))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("over the limit"), "{error}");
        let exact = write(Response::Found(vec![0; 100])).await;
        let read = codec
            .read_response(&PROTOCOL, &mut futures::io::Cursor::new(exact))
            .await
            .unwrap();
        assert_eq!(read, Response::Found(vec![0; 100]));
    }

    #[tokio::test]
    async fn responses_round_trip_and_decode_strictly() {
        for r in [
            Response::Found(vec![1, 2, 3]),
            Response::Found(vec![]),
            Response::NotFound,
            Response::Refused,
        ] {
            assert_eq!(read(&write(r.clone()).await).await.unwrap(), r);
        }
        assert_eq!(
            write(Response::Found(vec![9])).await,
            [0, 1, 0, 0, 0, 0, 0, 0, 0, 9]
        );
        assert!(read(&[]).await.is_err(), "empty");
        assert!(read(&[1, 0]).await.is_err(), "trailing bytes");
        assert!(read(&[9]).await.is_err(), "unknown status");
        assert!(
            read(&[0, 5, 0, 0, 0, 0, 0, 0, 0, 1]).await.is_err(),
            "shorter than announced"
        );
        let mut huge = vec![0u8];
        huge.extend_from_slice(&(MAX_BLOB_LEN + 1).to_le_bytes());
        assert!(
            read(&huge).await.is_err(),
            "over the limit, refused before allocating"
        );
    }
}
