package cliout

import "io"

// countBound bounds how far ReadInput reads past its limit to learn an
// input's size, so that a refusal can name it without reading forever.
const countBound = 1 << 30

// ReadInput reads r (a value or payload piped to the CLI) up to max
// bytes. size is the input's whole size when it is larger (read and
// dropped up to 1 GiB past max; at least max+1 beyond that), so that the
// refusal can say how large it was; data is then cut at max.
func ReadInput(r io.Reader, max int64) (data []byte, size int64, err error) {
	data, err = io.ReadAll(io.LimitReader(r, max+1))
	size = int64(len(data))
	if err != nil || size <= max {
		return data, size, err
	}
	rest, err := io.Copy(io.Discard, io.LimitReader(r, countBound))
	return data[:max], size + rest, err
}
