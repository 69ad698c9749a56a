//! One bounded codec for every request-response protocol of swarmlabel, generic over its messages
//! as rust-libp2p's `request_response::cbor::Codec<Req, Resp>` is.
//!
//! A message is one frame per stream: the writer sends the frame and closes its side, the reader
//! takes at most the limit plus one byte and refuses the frame if it got more, before any decoding.
//! So no peer can make us hold more than the limit, whatever length its frame announces inside.
//! A request may lower the limit of its own response ([`Frame::response_limit`]): the codec that
//! wrote the request is the one that reads its response (libp2p clones one per outbound stream).

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::StreamProtocol;

/// A message carried as one whole frame.
pub trait Frame: Sized + Send + 'static {
    /// The frame's bytes; an error when the message cannot be carried (over a limit).
    fn to_frame(&self) -> io::Result<Vec<u8>>;

    /// Decodes a whole frame strictly: exact lengths, known kinds, nothing trailing.
    fn from_frame(frame: Vec<u8>) -> io::Result<Self>;

    /// For a request: the most bytes its response may take, when the requester knows better than
    /// the protocol's limit (a blob of a known size). `None`: the protocol's limit.
    fn response_limit(&self) -> Option<usize> {
        None
    }
}

/// The codec of a protocol whose requests are `Req` and responses `Resp`, each bounded.
#[derive(Debug)]
pub struct Codec<Req, Resp> {
    max_request: usize,
    max_response: usize,
    /// The limit of the response to the request this codec wrote.
    expected: Option<usize>,
    messages: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Codec<Req, Resp> {
    /// A codec refusing requests over `max_request` bytes and responses over `max_response`.
    pub fn new(max_request: usize, max_response: usize) -> Self {
        Self {
            max_request,
            max_response,
            expected: None,
            messages: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for Codec<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            max_request: self.max_request,
            max_response: self.max_response,
            expected: self.expected,
            messages: PhantomData,
        }
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads the rest of the stream, refusing it past `max` bytes.
pub async fn read_bounded<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
    protocol: &StreamProtocol,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(max.min(64 * 1024));
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(invalid(format!(
            "a {protocol} frame over the limit of {max} bytes"
        )));
    }
    Ok(buf)
}

impl<Req: Frame, Resp: Frame> libp2p::request_response::Codec for Codec<Req, Resp> {
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        Req::from_frame(read_bounded(io, self.max_request, protocol).await?)
    }

    async fn read_response<T>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let max = self.expected.unwrap_or(self.max_response);
        Resp::from_frame(read_bounded(io, max, protocol).await?)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.expected = req.response_limit().map(|l| l.min(self.max_response));
        io.write_all(&req.to_frame()?).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&res.to_frame()?).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec as _;

    #[derive(Debug, PartialEq)]
    struct Bytes(Vec<u8>, Option<usize>);

    impl Frame for Bytes {
        fn to_frame(&self) -> io::Result<Vec<u8>> {
            Ok(self.0.clone())
        }
        fn from_frame(frame: Vec<u8>) -> io::Result<Self> {
            Ok(Bytes(frame, None))
        }
        fn response_limit(&self) -> Option<usize> {
            self.1
        }
    }

    const P: StreamProtocol = StreamProtocol::new("/test/1");

    #[tokio::test]
    async fn frames_over_the_limit_are_refused_before_decoding() {
        let mut codec = Codec::<Bytes, Bytes>::new(4, 8);
        let ok = codec
            .read_request(&P, &mut futures::io::Cursor::new(vec![1; 4]))
            .await
            .unwrap();
        assert_eq!(ok, Bytes(vec![1; 4], None));
        let err = codec
            .read_request(&P, &mut futures::io::Cursor::new(vec![1; 5]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("over the limit of 4"), "{err}");
        assert!(
            codec
                .read_response(&P, &mut futures::io::Cursor::new(vec![1; 9]))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_request_can_lower_the_limit_of_its_response() {
        let mut codec = Codec::<Bytes, Bytes>::new(4, 100);
        let mut sink = futures::io::Cursor::new(Vec::new());
        codec
            .write_request(&P, &mut sink, Bytes(vec![7], Some(3)))
            .await
            .unwrap();
        assert_eq!(sink.into_inner(), [7]);
        assert!(
            codec
                .read_response(&P, &mut futures::io::Cursor::new(vec![0; 4]))
                .await
                .is_err(),
            "4 bytes where the request allowed 3"
        );
        assert!(
            codec
                .read_response(&P, &mut futures::io::Cursor::new(vec![0; 3]))
                .await
                .is_ok()
        );
    }
}
