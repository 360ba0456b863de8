package configs

import (
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// This file decodes scalars into the Go types the loader and the sinks use.

func (d *yamlDecoder) decodeBool(v value, rv reflect.Value, path string) {
	s := v.str
	if v.kind == kindBool || v.kind == kindString && v.expanded {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			rv.SetBool(true)
			return
		case "false":
			rv.SetBool(false)
			return
		}
	}
	d.typeError(v, path, "true or false")
}

// integer is a parsed YAML integer: its sign and magnitude, so that both
// int64 and uint64 destinations can be range-checked.
type integer struct {
	neg bool
	abs uint64
}

func (n integer) int64() int64 {
	if n.neg && n.abs > 0 {
		return -int64(n.abs-1) - 1
	}
	return int64(n.abs)
}

// integer parses an integer scalar, or a string that came from ${VAR}.
func (d *yamlDecoder) integer(v value, path string) (integer, bool) {
	switch v.kind {
	case kindInt:
		if in, ok := v.node.(*ast.IntegerNode); ok {
			switch x := in.Value.(type) {
			case int64:
				if x < 0 {
					return integer{neg: true, abs: uint64(-(x + 1)) + 1}, true
				}
				return integer{abs: uint64(x)}, true
			case uint64:
				return integer{abs: x}, true
			}
		}
	case kindString:
		s := strings.TrimSpace(v.str)
		digits := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
		if digits != "" && strings.Trim(digits, "0123456789") == "" {
			u, err := strconv.ParseUint(digits, 10, 64)
			if err != nil {
				// The YAML parser leaves integers beyond 64 bits as strings.
				d.errorf(v.pos, path, "%s is out of range", v.show())
				return integer{}, false
			}
			if v.expanded {
				return integer{neg: strings.HasPrefix(s, "-"), abs: u}, true
			}
		}
	}
	d.typeError(v, path, "an integer")
	return integer{}, false
}

func (d *yamlDecoder) decodeFloat(v value, rv reflect.Value, path string) {
	var f float64
	switch {
	case v.kind == kindFloat:
		fn, ok := v.node.(*ast.FloatNode)
		if !ok {
			d.errorf(v.pos, path, "expected a finite number, got %s", v.show())
			return
		}
		f = fn.Value
	case v.kind == kindInt:
		n, ok := d.integer(v, path)
		if !ok {
			return
		}
		f = float64(n.abs)
		if n.neg {
			f = -f
		}
	case v.kind == kindString && v.expanded:
		x, err := strconv.ParseFloat(strings.TrimSpace(v.str), 64)
		if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
			d.typeError(v, path, "a number")
			return
		}
		f = x
	default:
		d.typeError(v, path, "a number")
		return
	}
	if rv.OverflowFloat(f) {
		d.errorf(v.pos, path, "%s is out of range", v.show())
		return
	}
	rv.SetFloat(f)
}

func (d *yamlDecoder) decodeDuration(v value, rv reflect.Value, path string) {
	switch v.kind {
	case kindInt:
		if n, ok := d.integer(v, path); ok && n.abs == 0 {
			rv.SetInt(0)
		} else if ok {
			d.errorf(v.pos, path, "invalid duration %s: a duration needs a unit: expected %s", v.show(), durationForm)
		}
	case kindString:
		t, err := parseDuration(v.str)
		if err != nil {
			d.errorf(v.pos, path, "invalid duration %s: %v", v.show(), err)
			return
		}
		rv.SetInt(int64(t))
	default:
		d.typeError(v, path, durationForm)
	}
}

func (d *yamlDecoder) decodeSize(v value, rv reflect.Value, path string) {
	switch v.kind {
	case kindInt:
		n, ok := d.integer(v, path)
		if !ok {
			return
		}
		if n.neg && n.abs != 0 {
			d.errorf(v.pos, path, "invalid size %s: must not be negative", v.show())
			return
		}
		if n.abs > math.MaxInt64 {
			d.errorf(v.pos, path, "invalid size %s: too large", v.show())
			return
		}
		rv.SetInt(int64(n.abs))
	case kindString:
		s, err := parseSize(v.str)
		if err != nil {
			d.errorf(v.pos, path, "invalid size %s: %v", v.show(), err)
			return
		}
		rv.SetInt(int64(s))
	default:
		d.typeError(v, path, sizeForm)
	}
}

func (d *yamlDecoder) decodeReplayWindow(v value, rv reflect.Value, path string) {
	switch v.kind {
	case kindInt:
		var s Size
		d.decodeSize(v, reflect.ValueOf(&s).Elem(), path)
		rv.Set(reflect.ValueOf(ReplayWindow{Bytes: s}))
	case kindString:
		w, err := parseReplayWindow(v.str)
		if err != nil {
			d.errorf(v.pos, path, "invalid replay window %s: %v", v.show(), err)
			return
		}
		rv.Set(reflect.ValueOf(w))
	default:
		d.typeError(v, path, `a size such as "256MiB" or a duration such as "1h"`)
	}
}
