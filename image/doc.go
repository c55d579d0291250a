// Package image owns the aduimg container: aduflash's signed, streaming, chunked image format
// (see docs/aduimg.md), and the keys and keyrings that sign and verify it.
//
// A signed header comes first; a Reader verifies its signature before handing out a single
// payload byte, then checks every payload byte against the chunk hashes the header carries
// while it streams, with memory bounded by one chunk. Keys are the PEM files imgtool uses, so
// one key signs both aduimg and MCUboot images (package image/mcuboot).
package image
