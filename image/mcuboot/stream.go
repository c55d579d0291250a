package mcuboot

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/aduflash/aduflash/image"
)

// Reader streams an MCUboot image through and checks it on the way as VerifyTrusted does:
// the header and the layout it declares before the first byte is handed out; the header,
// body and protected TLV area hashed as they pass; then the TLV area at the end of the image,
// whose hash TLV and signature are checked against the trusted keys, and the image's facts
// against the caller's check, before Read hands out any byte of the TLV areas. An image that
// does not verify is never handed out whole. Padding after the TLV area (an image padded to
// its slot) passes through; the stream must end exactly at the size given.
//
// Memory: the TLV areas (at most 128 KiB), and the signed region only when the keyring holds
// an Ed25519 key: a pure signature (SIG_PURE, named only at the end) covers the region
// itself, and Ed25519 hashes its R, which comes with the signature, before the message.
type Reader struct {
	src     io.Reader
	size    int64
	keys    []crypto.PublicKey
	check   func(*Image) error
	h       Header
	off     int64 // bytes read from src
	body    int64 // where the body ends and the TLV areas start
	hashes  map[int]hash.Hash
	region  []byte // the hashed region, when a pure signature may need it
	keep    bool
	tail    hash.Hash // SHA-256 of everything after the hashed region, for VerifyAt
	img     *Image
	bits    int    // the image hash VerifyAt checks the region with
	pending []byte // checked bytes not handed out yet
	err     error  // sticky; io.EOF after the last byte
}

// NewReader reads the header of an image of size bytes from r and checks it and the layout it
// declares. kr holds the trusted keys; check, if not nil, is called with the verified image
// (its protected TLVs: the security counter) before its last bytes are handed out, and an
// error from it refuses the image.
func NewReader(r io.Reader, size int64, kr *image.Keyring, check func(*Image) error) (*Reader, error) {
	rd := &Reader{src: r, size: size, keys: trustedKeys(kr), check: check, tail: sha256.New()}
	if size < 0 {
		return nil, fmt.Errorf("%w: negative size %d", ErrTruncated, size)
	}
	if size > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes is more than the %d this tool reads", ErrTooLarge, size, MaxSize)
	}
	head := make([]byte, min(size, HeaderSize))
	if err := rd.readFull(head); err != nil {
		return nil, err
	}
	h, err := parseHeader(head, int(size))
	if err != nil {
		return nil, err
	}
	rd.h, rd.body = h, int64(h.bodyEnd())
	rd.hashes = map[int]hash.Hash{}
	for _, k := range rd.keys {
		t, err := image.TypeOf(k)
		if err != nil {
			continue
		}
		rd.keep = rd.keep || t == image.Ed25519
		for _, bits := range allowedVerifyHashes(t) {
			if rd.hashes[bits] == nil {
				rd.hashes[bits] = hashAlgs[bits].new()
			}
		}
	}
	rd.hashRegion(head)
	rd.pending = head
	return rd, nil
}

// Header returns the image header.
func (r *Reader) Header() Header { return r.h }

// Image returns the image (header and TLV areas; no trailer) once it verified, nil before.
func (r *Reader) Image() *Image { return r.img }

// Read hands out the image's bytes once checked (see Reader). Errors are sticky.
func (r *Reader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		switch {
		case r.off < r.body:
			return r.pass(p, r.body, r.hashRegion)
		case r.img == nil:
			r.err = r.readTLVs()
		case r.off < r.size:
			return r.pass(p, r.size, func(b []byte) { r.tail.Write(b) })
		default:
			r.err = io.EOF
		}
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// pass reads from the source straight into p, up to offset end, and accounts for the bytes;
// the last bytes of the stream are handed out only once the source ends there.
func (r *Reader) pass(p []byte, end int64, account func([]byte)) (int, error) {
	n, err := r.src.Read(p[:min(int64(len(p)), end-r.off)])
	account(p[:n])
	r.off += int64(n)
	switch {
	case r.off == r.size:
		if err := r.atEnd(); err != nil {
			r.err = err
			return 0, err
		}
	case err == io.EOF:
		r.err = r.truncated()
	case err != nil:
		r.err = err
	}
	if n == 0 {
		return 0, r.err
	}
	return n, nil
}

func (r *Reader) hashRegion(b []byte) {
	for _, h := range r.hashes {
		h.Write(b)
	}
	if r.keep {
		r.region = append(r.region, b...)
	}
}

// readTLVs reads the TLV areas after the body, checks the image and queues the areas.
func (r *Reader) readTLVs() error {
	b := make([]byte, TLVInfoSize)
	if err := r.readFull(b); err != nil {
		return err
	}
	prot := 0
	if binary.LittleEndian.Uint16(b) == TLVProtInfoMagic {
		prot = int(binary.LittleEndian.Uint16(b[2:]))
		var err error
		if b, err = r.readArea(b, 0, prot); err != nil {
			return err
		}
		if prot >= TLVInfoSize && r.body+int64(prot)+TLVInfoSize <= r.size {
			if b, err = r.readMore(b, TLVInfoSize); err != nil {
				return err
			}
		}
	}
	if len(b) >= prot+TLVInfoSize {
		var err error
		if b, err = r.readArea(b, prot, int(binary.LittleEndian.Uint16(b[prot+2:]))); err != nil {
			return err
		}
	}
	protected, area, err := parseTLVAreas(b, int(r.body), int(r.size), r.h)
	if err != nil {
		return err
	}
	img := &Image{Size: int(r.size), Header: r.h, FlagNames: FlagNames(r.h.Flags), Protected: protected, Unprotected: area}
	img.Padding = int(r.size) - img.End()
	if protected != nil {
		r.hashRegion(b[:protected.Size])
	}
	r.tail.Write(b[img.HashedSize()-int(r.body):])
	if err := r.verify(img); err != nil {
		return err
	}
	if r.off == r.size {
		if err := r.atEnd(); err != nil {
			return err
		}
	}
	r.img, r.pending = img, b
	return nil
}

// readArea reads the rest of the TLV area that starts at b[at:] (its info header read) when
// its declared size fits the image; parseTLVAreas refuses it otherwise.
func (r *Reader) readArea(b []byte, at, size int) ([]byte, error) {
	if size < TLVInfoSize || r.body+int64(at+size) > r.size {
		return b, nil
	}
	return r.readMore(b, size-TLVInfoSize)
}

func (r *Reader) readMore(b []byte, n int) ([]byte, error) {
	more := make([]byte, n)
	if err := r.readFull(more); err != nil {
		return nil, err
	}
	return append(b, more...), nil
}

// verify checks img's hash and signature against the region that streamed past, then the
// caller's check.
func (r *Reader) verify(img *Image) error {
	s := &signedRegion{region: r.region, sums: map[int][]byte{}}
	for bits, h := range r.hashes {
		s.sums[bits] = h.Sum(nil)
	}
	if err := img.verifyTrusted(s, r.keys); err != nil {
		return err
	}
	r.region = nil
	for _, t := range img.Unprotected.Records {
		if h, ok := hashByTLV(t.Type); ok {
			r.bits = h.bits
			break
		}
	}
	if r.check != nil {
		return r.check(img)
	}
	return nil
}

// readFull reads exactly len(b) bytes of the image from the source.
func (r *Reader) readFull(b []byte) error {
	n, err := io.ReadFull(r.src, b)
	r.off += int64(n)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return r.truncated()
	}
	return err
}

func (r *Reader) truncated() error {
	return fmt.Errorf("%w: the stream ends at byte %d of the %d announced", ErrTruncated, r.off, r.size)
}

// atEnd makes sure the source ends after the image's size bytes.
func (r *Reader) atEnd() error {
	var one [1]byte
	n, err := io.ReadFull(r.src, one[:])
	switch {
	case n > 0:
		return fmt.Errorf("%w: the stream goes on after the %d bytes announced", ErrTooLarge, r.size)
	case err != io.EOF:
		return err
	}
	return nil
}

// VerifyAt reads the image back from ra (e.g. the slot it was written to) and checks it
// against what streamed: the hashed region against the image's hash TLV, the rest (TLV areas
// and padding) against its SHA-256 taken on the way. Call it after Read returned io.EOF.
func (r *Reader) VerifyAt(ra io.ReaderAt) error {
	if r.img == nil || r.err != io.EOF {
		return errors.New("mcuboot: VerifyAt before the whole image was read")
	}
	hashed := int64(r.img.HashedSize())
	h := hashAlgs[r.bits].new()
	if _, err := io.Copy(h, io.NewSectionReader(ra, 0, hashed)); err != nil {
		return fmt.Errorf("mcuboot: reading the image back: %w", err)
	}
	want := r.img.Find(hashAlgs[r.bits].tlv).Data
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("%w: read back, header, body and protected TLVs (0x0..0x%x) hash to %s, the image's %s TLV holds %s",
			ErrHashMismatch, hashed, short(got), TLVName(hashAlgs[r.bits].tlv), short(want))
	}
	t := sha256.New()
	if _, err := io.Copy(t, io.NewSectionReader(ra, hashed, r.size-hashed)); err != nil {
		return fmt.Errorf("mcuboot: reading the image back: %w", err)
	}
	if !bytes.Equal(t.Sum(nil), r.tail.Sum(nil)) {
		return fmt.Errorf("%w: read back, the TLV areas and padding (0x%x..0x%x) are not the bytes written", ErrHashMismatch, hashed, r.size)
	}
	return nil
}
