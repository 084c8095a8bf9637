package stage

import (
	"sync"

	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/klauspost/compress/zstd"
)

// arrow/go v17's zstd codec builds a new zstd encoder, with its own
// history buffers, for every page it compresses at an explicit level (which
// is how the column writers call it). With five tables of a dozen columns
// each, those encoders dominated the export's heap. sharedZstd compresses
// every page through one encoder, which klauspost/compress allows to be
// used concurrently (one internal encoder per CPU), and keeps arrow's codec
// for everything else, reading included.
type sharedZstd struct {
	compress.Codec
	enc *zstd.Encoder
}

func (z sharedZstd) Encode(dst, src []byte) []byte { return z.enc.EncodeAll(src, dst[:0]) }

// EncodeLevel ignores the level: convsync writes at zstd's default level.
func (z sharedZstd) EncodeLevel(dst, src []byte, _ int) []byte { return z.enc.EncodeAll(src, dst[:0]) }

var registerZstd = sync.OnceValue(func() error {
	orig, err := compress.GetCodec(compress.Codecs.Zstd)
	if err != nil {
		return err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithZeroFrames(true), zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(1<<20))
	if err != nil {
		return err
	}
	compress.RegisterCodec(compress.Codecs.Zstd, sharedZstd{Codec: orig, enc: enc})
	return nil
})
