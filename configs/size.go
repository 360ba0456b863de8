package configs

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes. In YAML it is an integer (bytes) or a string with a
// unit: "512kB", "64MiB", "1.5GB". kB, MB, GB and TB are powers of 1000; KiB,
// MiB, GiB and TiB powers of 1024; units are case-insensitive.
type Size int64

// String formats s with the largest binary unit that divides it ("64MiB"), or
// in bytes ("1000B").
func (s Size) String() string {
	units := []struct {
		name string
		n    Size
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if s != 0 && s%u.n == 0 {
			return strconv.FormatInt(int64(s/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// sizeUnits maps lower-case unit names to their multipliers.
var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

const sizeForm = `a size such as 1048576, "512kB" or "64MiB"`

// parseSize parses a size string. Its errors do not repeat s.
func parseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		if strings.HasPrefix(t, "-") {
			return 0, fmt.Errorf("must not be negative")
		}
		return 0, fmt.Errorf("expected %s", sizeForm)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("unknown size unit: expected B, kB, MB, GB, TB, KiB, MiB, GiB or TiB")
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("expected %s", sizeForm)
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("too large")
	}
	return Size(v), nil
}

// human formats s for a message: "10.0 MiB", "512 B".
func (s Size) human() string {
	switch {
	case s >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(s)/(1<<30))
	case s >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(s)/(1<<20))
	case s >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(s)/(1<<10))
	}
	return fmt.Sprintf("%d B", int64(s))
}
