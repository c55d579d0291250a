// Package mtdsim simulates raw flash (NOR and NAND, as *Flash) and a block device (eMMC
// partition or file, as *Block) in memory, with the failure behaviour that firmware
// writers must survive: bit-clearing NOR programs, once-per-erase NAND pages, factory and
// grown bad blocks, scheduled erase and program failures, and power cuts that tear the
// operation in progress. *Flash has the method set of *mtd.Device, so every layer above
// package mtd is tested against it. The simulator is deterministic: all randomness (torn
// contents, garbage) comes from a PCG generator seeded by WithSeed (default seed 1).
//
// # Operations
//
// Power cuts and counters count operations, which are exactly:
//   - an erase of one erase block (Erase over n blocks is n operations, in order);
//   - NAND: a program of one page (WriteAt of n pages is n operations, in order);
//   - NOR: one WriteAt call, whatever its length;
//   - a MarkBad on NAND.
//
// Requests refused before touching the flash (bad range, ErrUnaligned, ErrBadBlock,
// ErrNotErased, zero-length writes) and reads, IsBad, Unlock, Sync are not operations.
// An operation that fails by schedule (FailEraseAt, FailProgramAt, WithEndurance) is an
// operation.
//
// # Power cuts
//
// PowerCutAfter(n): from now on, n operations complete and the next one is torn.
// PowerCutAfterBytes(n): from now on, programs complete while they fit in n bytes; the
// program that would pass n bytes is torn after exactly the bytes that fit, and once n
// bytes are used up the next operation of any kind is torn (for an erase: torn, for a
// program: torn after 0 bytes). The torn call returns an error wrapping mtd.ErrPowerCut;
// from then on every call (ReadAt, WriteAt, Erase, IsBad, MarkBad, Unlock, Sync) fails
// with mtd.ErrPowerCut until PowerOn, which disarms the cut. Info, Close and the
// inspection methods (Bytes, Snapshot, Counters, ...) keep working. Afterwards the
// content shows exactly what reached the flash:
//   - torn NOR write: the first k bytes of the write are programmed (old AND data), the
//     rest of the range is unchanged; with PowerCutAfter, k is drawn uniformly from
//     [0, len] (k == len: the write finished but its caller never learnt it).
//   - torn NAND page program: the first k bytes of the page hold the data, the rest of
//     the page is garbage (random bytes), and the page counts as programmed (programming
//     it again needs an erase); k is uniform in [0, page size] with PowerCutAfter. The
//     pages before it in the same WriteAt are complete, the pages after it untouched.
//   - torn erase: every byte of the block becomes old | r with r a random byte (some bits
//     set, some old content: "partially erased"); on NAND every page of the block counts
//     as programmed, so it must be erased again before use. The erase counts as one.
//   - torn MarkBad: the marker is not written.
//
// # Failures and bad blocks
//
// NAND only: WithFactoryBad marks blocks bad from the start (their content is garbage);
// MarkBad marks a block bad; IsBad reports both. Reads of a bad block return whatever it
// holds. Erase and WriteAt refuse bad blocks with mtd.ErrBadBlock (deliberately stricter
// than the kernel, which accepts write() into a bad block: mtd.Device performs the same
// check, so writers behave alike on both). FailEraseAt(block) makes every later erase of
// that block fail, and WithEndurance(n) makes a block's erases fail once it has been
// erased n times: a failed erase leaves the block partially erased like a torn erase and
// returns a *mtd.BlockError wrapping mtd.ErrIO. FailProgramAt(page) makes every program
// of that page fail (for NOR, page = byte offset / 1): the page is left garbage (NAND) or
// the NOR write is programmed up to that byte, and a *mtd.BlockError wrapping mtd.ErrIO is
// returned. Blocks are never marked bad automatically; that is the caller's job.
//
// # Lying reads
//
// Lie (on *Flash and *Block) makes reads of a range return other bytes than the medium
// holds: one flipped bit (FlipBit), the content the range had when the lie was armed
// (Stale), or fewer bytes than asked for, without an error (ShortRead, breaking the
// io.ReaderAt contract) or with one wrapping mtd.ErrIO (ShortReadErr). With AfterSync the
// lie starts only once the range has been written and the device synced, so a writer's own
// read-back right after programming sees the truth and a later verification does not. Writes
// and the inspection methods see the truth; lies are no operations.
//
// # UBI volumes
//
// *Volume models a UBI volume under the kernel's volume update (UBI_IOCVOLUP): an update
// erases the volume and sets its update marker, reads fail with ErrUpdateMarker while it is
// set, and only an update closed after exactly its announced bytes clears it. Its power cut
// (PowerCutAfterBytes) fails the write that passes the bytes and leaves the marker set.
//
// # Block devices
//
// *Block models an eMMC/SD partition or a file: any alignment, writes reach the medium in
// order, sector by sector, at once (Sync only counts). An operation is the write of one
// sector (or of the part of one sector a WriteAt touches); a torn sector write leaves the
// first k bytes of that part new and the rest old (k uniform in [0, part length] with
// PowerCutAfter, exact with PowerCutAfterBytes); earlier sectors of the write are new,
// later ones old.
package mtdsim
