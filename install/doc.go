// Package install puts one file into one slot, verified and resumable. The device agent
// (aduagent) and aduflash write both install through it.
//
// # Stages
//
// One pass over the bytes, each stage a reader over the one before:
//
//	download (download.Reader: HTTP with Range resume, or a local file)
//	  → file hash (the ADU SHA-256, in the download, over the whole file even across resumes)
//	  → format (aduimg: signature, then chunk hashes and decompression; MCUboot: hash and
//	    signature over what streamed; raw: as it is)
//	  → slot write (slots.Target; a discarding, counting sink in a dry run)
//	  → read-back (aduimg: every chunk hash over the slot; MCUboot: its hash TLV over what
//	    was written; raw: the SHA-256 of the slot, or the CRC-32C of every unit written)
//
// The stages run side by side on the cores, with a fixed number of buffers between them so
// that memory does not grow with the file: a goroutine reads the download ahead (the HTTP
// body and the file hash), another loads the aduimg chunks (decompression, chunk hashes), the
// caller's goroutine writes the slot; the read-back reads the slot in order and hashes on up
// to two cores.
//
// A slot copy (Source.Copy, FormatCopy) is the same pipeline with another slot as its file:
// the agent fills the spare bank's slots that an update does not write from the running
// bank's. Its bytes go in as they are, its read-back compares the slot with the source, read
// once more (a source that read wrong once does not pass), and a slot that holds them already
// is found so by that comparison before any writer is opened. CopySize tells how much of a
// slot to copy when nothing else does.
//
// # Promises
//
//   - An aduimg header's signature is checked before any payload byte is read; its key and
//     sizes are refused from its fixed part before the rest is read.
//   - The file hash is checked before the last bytes of the file are handed on (the download
//     withholds them), and the aduimg and MCUboot readers release their last chunk or their
//     TLV areas only at the end of the stream: a file that does not match its manifest, an
//     image whose signature or hash fails, an image the caller's check refuses, never
//     completes a slot. An MCUboot image's hash and signature, and its protected TLVs (the
//     security counter), come at its end: the caller's check sees them there.
//   - The slot is prepared once (slots.Layout.Prepare): the running bank is never opened.
//   - Errors wrap one of this package's sentinels (ErrDownload, ErrFileHash, ErrImage,
//     ErrSlot, ErrVerify, ...) around the cause, which callers map to result codes or exit
//     codes.
//
// # Resume
//
// Record is the one resume record of an install: the download.State (offset, file-hash
// state, validators) and the slots.Cursor of the slot write, taken together at chunk (aduimg)
// or unit (raw and copies, 1 MiB) boundaries: the download's state (a copy's source offset)
// is the one it had at the cursor's file offset (the read-ahead marks it there, and it
// travels with the chunk to the writer), saved once the slot holds the bytes up to the
// cursor, synced.
// Installer.Save persists it; Install continues from it, or starts over when it does not fit
// (another file, another slot geometry). MCUboot images start over.
//
// # Dry run
//
// Installer.DryRun does everything but the writes: the download or read, every check of the
// image, the slot's running-bank check and capacity, the caller's check, ending with the
// verdict a real run would reach; no slot byte is written, nothing is saved, and there is
// nothing to read back.
package install
