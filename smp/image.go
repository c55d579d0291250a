package smp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// SlotState is one slot of the device's image list (image state read).
type SlotState struct {
	Image     int    `cbor:"image" json:"image"`
	Slot      int    `cbor:"slot" json:"slot"`
	Version   string `cbor:"version" json:"version"`
	Hash      []byte `cbor:"hash" json:"hash"`
	Bootable  bool   `cbor:"bootable" json:"bootable"`
	Pending   bool   `cbor:"pending" json:"pending"`
	Confirmed bool   `cbor:"confirmed" json:"confirmed"`
	Active    bool   `cbor:"active" json:"active"`
	Permanent bool   `cbor:"permanent" json:"permanent"`
}

// HashHex is the slot's image hash in hex.
func (s SlotState) HashHex() string { return hex.EncodeToString(s.Hash) }

type imageList struct {
	Images []SlotState `cbor:"images"`
}

// ImageState reads the device's image list.
func (c *Client) ImageState(ctx context.Context) ([]SlotState, error) {
	var l imageList
	err := c.do(ctx, call{name: "image list", op: OpRead, group: GroupImage, id: IDState}, nil, &l)
	return l.Images, err
}

type stateWrite struct {
	Hash    []byte `cbor:"hash,omitempty"`
	Confirm bool   `cbor:"confirm"`
}

// Test marks the image with hash (in the secondary slot) to be tried once at the next reset;
// MCUboot reverts it at the reset after unless it is confirmed. It returns the new list.
func (c *Client) Test(ctx context.Context, hash []byte) ([]SlotState, error) {
	if len(hash) == 0 {
		return nil, fmt.Errorf("%w: image test needs the image's hash", ErrReply)
	}
	var l imageList
	err := c.do(ctx, call{name: "image test", op: OpWrite, group: GroupImage, id: IDState}, stateWrite{Hash: hash}, &l)
	return l.Images, err
}

// Confirm makes the image with hash permanent: the running image (confirm after a test
// boot), or an image in the secondary slot (swapped in for good at the next reset). A nil
// hash confirms the running image; the key is then left out, since MCUboot refuses a null.
func (c *Client) Confirm(ctx context.Context, hash []byte) ([]SlotState, error) {
	var l imageList
	err := c.do(ctx, call{name: "image confirm", op: OpWrite, group: GroupImage, id: IDState}, stateWrite{Hash: hash, Confirm: true}, &l)
	return l.Images, err
}

// Erase erases an image slot (1: the secondary, Zephyr's default).
func (c *Client) Erase(ctx context.Context, slot int) error {
	req := map[string]int{"slot": slot}
	return c.do(ctx, call{name: "image erase", op: OpWrite, group: GroupImage, id: IDErase, slow: true}, req, nil)
}

// SlotInfo is one image's slots as the device reports them (image slot info).
type SlotInfo struct {
	Image int `cbor:"image" json:"image"`
	Slots []struct {
		Slot          int   `cbor:"slot" json:"slot"`
		Size          int64 `cbor:"size" json:"size"`
		UploadImageID *int  `cbor:"upload_image_id" json:"upload_image_id,omitempty"`
	} `cbor:"slots" json:"slots"`
	MaxImageSize int64 `cbor:"max_image_size" json:"max_image_size,omitempty"`
}

// SlotInfo asks the device for its slots and their sizes (ErrNotSupported where it does not
// answer).
func (c *Client) SlotInfo(ctx context.Context) ([]SlotInfo, error) {
	var rsp struct {
		Images []SlotInfo `cbor:"images"`
	}
	err := c.do(ctx, call{name: "image slot info", op: OpRead, group: GroupImage, id: IDSlotInfo}, nil, &rsp)
	return rsp.Images, err
}

// uploadReq is one upload frame; len and sha go with the frame at offset 0 only.
type uploadReq struct {
	Len  int64  `cbor:"len,omitempty"`
	Off  int64  `cbor:"off"`
	Sha  []byte `cbor:"sha,omitempty"`
	Data []byte `cbor:"data"`
}

type uploadRsp struct {
	Off   *int64 `cbor:"off"`
	Match *bool  `cbor:"match"`
}

// maxStalls is how many replies in a row may leave the offset where it was.
const maxStalls = 3

// Upload sends the size bytes of img (an MCUboot image; sha its SHA-256, which the device
// uses to resume and check it) into the device's upload slot, starting at offset start (0,
// or where an interrupted upload stood), and calls progress (if not nil) with every offset
// the device acknowledges. The device says where it stands: a frame at another offset than
// the one it expects is answered with that offset, and the upload goes on from there; an
// offset of 0 sends the first frame (with len and sha) again. A device that resumes by sha
// answers the first frame with its offset. It ends when the device acknowledges size.
//
// The first frame (offset 0) waits Options.EraseTimeout: the device erases the slot then.
func (c *Client) Upload(ctx context.Context, img io.ReaderAt, size int64, sha []byte, start int64, progress func(off int64)) error {
	if size <= 0 {
		return fmt.Errorf("%w: image upload: an image of %d bytes", ErrReply, size)
	}
	maxPkt, err := c.packetSize(ctx)
	if err != nil {
		return err
	}
	off := min(max(start, 0), size)
	if off == size {
		off = 0
	}
	buf := make([]byte, maxPkt)
	stalls := 0
	for {
		req := uploadReq{Off: off}
		if off == 0 {
			req.Len, req.Sha = size, sha
		}
		n, err := chunkSize(req, maxPkt, size-off)
		if err != nil {
			return err
		}
		req.Data = buf[:n]
		if _, err := img.ReadAt(req.Data, off); err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == size) {
			return fmt.Errorf("image upload: reading the image at %d: %w", off, err)
		}
		next, err := c.uploadFrame(ctx, req, size)
		if err != nil {
			if off == start && off != 0 && errors.Is(err, ErrDevice) {
				// The device refused a resumed frame: it has no upload in progress.
				off, start = 0, 0
				continue
			}
			return err
		}
		if progress != nil {
			progress(next)
		}
		if next == size {
			return nil
		}
		if next == off {
			stalls++
		} else {
			stalls = 0
		}
		if stalls > maxStalls {
			return fmt.Errorf("%w: image upload: the device answered offset %d %d times without taking the data", ErrReply, next, stalls)
		}
		off = next
	}
}

// UploadFrame sends one upload frame of an image of size bytes (sha its SHA-256): the start
// of data, the image's bytes at off, as much as fits the negotiated packet ("len" and "sha"
// go with the frame at offset 0). It returns how many bytes it sent and the offset the
// device reports, which is off+sent when it took them and where its upload stands otherwise
// (a device that resumes by sha answers the frame at 0 with its offset). For callers that
// stream an image they do not hold whole; Upload is the loop over it for one that does.
func (c *Client) UploadFrame(ctx context.Context, off, size int64, sha, data []byte) (int, int64, error) {
	if size <= 0 || off < 0 || off >= size || len(data) == 0 {
		return 0, 0, fmt.Errorf("%w: image upload: %d bytes at %d of a %d-byte image", ErrReply, len(data), off, size)
	}
	maxPkt, err := c.packetSize(ctx)
	if err != nil {
		return 0, 0, err
	}
	req := uploadReq{Off: off}
	if off == 0 {
		req.Len, req.Sha = size, sha
	}
	n, err := chunkSize(req, maxPkt, min(int64(len(data)), size-off))
	if err != nil {
		return 0, 0, err
	}
	req.Data = data[:n]
	next, err := c.uploadFrame(ctx, req, size)
	return n, next, err
}

// uploadFrame sends one frame and returns the offset the device reports.
func (c *Client) uploadFrame(ctx context.Context, req uploadReq, size int64) (int64, error) {
	var rsp uploadRsp
	k := call{name: fmt.Sprintf("image upload at %d", req.Off), op: OpWrite, group: GroupImage, id: IDUpload, slow: req.Off == 0}
	if err := c.do(ctx, k, req, &rsp); err != nil {
		return 0, err
	}
	switch {
	case rsp.Off == nil:
		return 0, fmt.Errorf("%w: %s: no offset in the reply", ErrReply, k.name)
	case *rsp.Off < 0 || *rsp.Off > size:
		return 0, fmt.Errorf("%w: %s: the device reports offset %d of a %d-byte image", ErrReply, k.name, *rsp.Off, size)
	case *rsp.Off == size && rsp.Match != nil && !*rsp.Match:
		return 0, fmt.Errorf("%w: the device's SHA-256 of the %d bytes it received differs from %x", ErrMismatch, size, req.Sha)
	}
	return *rsp.Off, nil
}

// chunkSize is how many data bytes (at most left) fit a frame of req within maxPkt bytes.
func chunkSize(req uploadReq, maxPkt int, left int64) (int, error) {
	req.Data = []byte{}
	empty, err := encMode.Marshal(req)
	if err != nil {
		return 0, err
	}
	room := maxPkt - HeaderSize - (len(empty) - 1) // the empty data's 1-byte head goes
	n := int(min(int64(room), left))
	for n > 0 && n+bstrHead(n) > room {
		n--
	}
	if n <= 0 {
		return 0, fmt.Errorf("%w: image upload: a %d-byte packet has no room for data", ErrTooLarge, maxPkt)
	}
	return n, nil
}

// bstrHead is the size of a CBOR byte string's head for n bytes.
func bstrHead(n int) int {
	switch {
	case n < 24:
		return 1
	case n < 256:
		return 2
	case n < 65536:
		return 3
	}
	return 5
}

// FindImage returns the slot of list that holds the image with hash (nil when none).
func FindImage(list []SlotState, hash []byte) *SlotState {
	for i := range list {
		if bytes.Equal(list[i].Hash, hash) {
			return &list[i]
		}
	}
	return nil
}
