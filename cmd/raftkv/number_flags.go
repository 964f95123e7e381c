package main

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// numberValue is an integer flag whose refusal says what number it wants: pflag's
// own says only strconv.ParseInt: parsing "8GB": invalid syntax. Its Type is
// pflag's, so the help and the environment's errors read as before.
type numberValue[T int | int64 | uint64] struct {
	p *T
	// what the number counts, as the error says it: "bytes", "entries".
	what string
}

// numberVar registers an integer flag as pflag's IntVar, Int64Var or Uint64Var do.
func numberVar[T int | int64 | uint64](fs *pflag.FlagSet, p *T, name string, value T, what, usage string) {
	*p = value
	fs.Var(numberValue[T]{p, what}, name, usage)
}

func (v numberValue[T]) String() string {
	if v.p == nil {
		return "0"
	}
	return fmt.Sprint(*v.p)
}

func (v numberValue[T]) Type() string {
	switch any(*new(T)).(type) {
	case int64:
		return "int64"
	case uint64:
		return "uint64"
	}
	return "int"
}

func (v numberValue[T]) Set(s string) error {
	var zero T
	switch any(zero).(type) {
	case uint64:
		n, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			return v.refuse(s, err)
		}
		*v.p = T(n)
	default:
		bits := 64
		if _, isInt := any(zero).(int); isInt {
			bits = strconv.IntSize
		}
		n, err := strconv.ParseInt(s, 0, bits)
		if err != nil {
			return v.refuse(s, err)
		}
		*v.p = T(n)
	}
	return nil
}

// withUnit is a number followed by a unit of bytes, as in 8GB or 64MiB.
var withUnit = regexp.MustCompile(`^\s*([0-9]+)\s*([kKmMgGtT])(i?[bB])?\s*$`)

func (v numberValue[T]) refuse(s string, err error) error {
	if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && !strings.HasPrefix(s, "-") {
		var most any = uint64(math.MaxUint64)
		switch any(*new(T)).(type) {
		case int:
			most = math.MaxInt
		case int64:
			most = int64(math.MaxInt64)
		}
		return fmt.Errorf("%q is too large; give a number of %s up to %v", s, v.what, most)
	}
	if m := withUnit.FindStringSubmatch(s); m != nil && v.what == "bytes" {
		shift := 10 * (1 + strings.Index("kmgt", strings.ToLower(m[2])))
		if n, err := strconv.ParseUint(m[1], 10, 64); err == nil && n <= math.MaxUint64>>shift {
			return fmt.Errorf("%q has a unit; give a plain number of bytes, e.g. %d for %d %siB", s, n<<shift, n, strings.ToUpper(m[2]))
		}
	}
	if _, isUint := any(*new(T)).(uint64); isUint && strings.HasPrefix(s, "-") {
		return fmt.Errorf("%q is negative; give a plain number of %s, 0 or more", s, v.what)
	}
	return fmt.Errorf("%q is not a plain number of %s; give digits only, without a unit", s, v.what)
}

// boolValue is a member's boolean flag that refuses a value other than true or false
// in those words, not strconv's ("strconv.ParseBool: parsing ...").
type boolValue struct{ pflag.Value }

func (v boolValue) Set(s string) error {
	if err := v.Value.Set(s); err != nil {
		return fmt.Errorf("%q is not true or false; give one of them (a bare flag means true)", s)
	}
	return nil
}

func (v boolValue) IsBoolFlag() bool { return true }

// plainBools wraps every boolean flag of fs in boolValue.
func plainBools(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Value.Type() == "bool" {
			f.Value = boolValue{f.Value}
		}
	})
}
