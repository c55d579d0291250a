// Package image owns the aduimg container: aduflash's signed, streaming, chunked image format
// (see docs/aduimg.md), and the keys and keyrings that sign and verify it.
//
// A signed header comes first; a Reader verifies its signature over the raw header bytes before
// it parses them beyond the 104-byte fixed part (which may only refuse an image: unknown key,
// too large for VerifyOptions) and before it hands out a single payload byte, then checks every
// payload byte against the chunk hashes the header carries while it streams, with memory
// bounded by about two chunks. Keys are the PEM files imgtool uses, so one key signs both aduimg
// and MCUboot images (package image/mcuboot).
//
// Making an image: Sign reads a payload of known size and writes the image to an io.WriterAt
// (the frames first, from the header's precomputed size on, then the signed header at offset 0),
// hashing and compressing chunks on all cores with a fixed pool of buffers.
//
// Reading an image: NewReader (or Verify, which drains it) takes any io.Reader, e.g. an HTTP
// body. To resume after a power cut, keep the header (Header.Encoded) or fetch it again, check
// the chunks already in the slot with Header.VerifyChunk, and continue with NewReaderAt or
// NewChunkReader from the first missing chunk. ParseHeader reads a header without checking its
// signature, for inspection only. Header.CheckDowngrade applies the anti-rollback counter.
//
// Every rejection wraps an exported sentinel error (ErrBadMagic, ErrMalformedHeader,
// ErrChunkHash, …, and ErrUnknownKey, ErrRevokedKey, ErrBadSignature from the key code) that
// callers test with errors.Is. The package never logs, exits or panics on input.
package image
