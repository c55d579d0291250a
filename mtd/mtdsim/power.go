package mtdsim

import (
	"math/rand/v2"

	"github.com/aduflash/aduflash/mtd"
)

// Option configures a simulated device.
type Option func(*config)

type config struct {
	seed       uint64
	strict     bool
	factoryBad []int
	endurance  int
	name       string
}

func newConfig(opts []Option) config {
	c := config{seed: 1}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithSeed sets the seed of all randomness (torn contents, garbage). Default 1.
func WithSeed(seed uint64) Option { return func(c *config) { c.seed = seed } }

// WithStrict makes a NOR WriteAt that would have to turn a 0 bit into 1 fail with
// mtd.ErrNotErased, writing nothing, instead of silently ANDing.
func WithStrict() Option { return func(c *config) { c.strict = true } }

// WithFactoryBad marks NAND erase blocks bad from the start (ignored on NOR).
func WithFactoryBad(blocks ...int) Option {
	return func(c *config) { c.factoryBad = append(c.factoryBad, blocks...) }
}

// WithEndurance makes an erase of a block fail (mtd.ErrIO) once the block has already
// been erased n times; the block then keeps failing. 0 means unlimited.
func WithEndurance(n int) Option { return func(c *config) { c.endurance = n } }

// WithName sets Info().Name.
func WithName(name string) Option { return func(c *config) { c.name = name } }

// power is the power-cut state machine shared by Flash and Block.
type power struct {
	opsLeft   int64 // -1: not armed
	bytesLeft int64 // -1: not armed
	off       bool
}

func newPower() power { return power{opsLeft: -1, bytesLeft: -1} }

func (p *power) arm(ops, bytes int64) { p.opsLeft, p.bytesLeft = ops, bytes }

func (p *power) on() { *p = newPower() }

// begin is called before an operation that reaches the medium and would transfer n bytes
// (0 for an erase or a bad-block mark). It returns -1 when the operation completes, or
// k in [0, n]: the operation is torn after k bytes and the power is now off.
func (p *power) begin(n int, rng *rand.Rand) int {
	if p.opsLeft == 0 {
		p.off = true
		return rng.IntN(n + 1)
	}
	if p.bytesLeft == 0 || p.bytesLeft > 0 && int64(n) > p.bytesLeft {
		p.off = true
		return int(p.bytesLeft)
	}
	if p.opsLeft > 0 {
		p.opsLeft--
	}
	if p.bytesLeft > 0 {
		p.bytesLeft -= int64(n)
	}
	return -1
}

func (p *power) check() error {
	if p.off {
		return mtd.ErrPowerCut
	}
	return nil
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

func fillRandom(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}
