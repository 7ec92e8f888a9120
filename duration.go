package scanfleet

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Duration is a time.Duration that reads and writes JSON as a string such as
// "24h" or "90s". A JSON number is read as seconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string; zero is "".
func (d Duration) MarshalJSON() ([]byte, error) {
	if d == 0 {
		return []byte(`""`), nil
	}
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "24h", "" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case nil:
		*d = 0
	case float64:
		// Out of range, the conversion to int64 is undefined (a huge
		// timeout would come out negative or zero).
		ns := x * float64(time.Second)
		if ns >= math.MaxInt64 || ns <= math.MinInt64 {
			return fmt.Errorf("%s seconds is out of range for a duration", b)
		}
		*d = Duration(ns)
	case string:
		if x == "" {
			*d = 0
			return nil
		}
		p, err := time.ParseDuration(x)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as \"24h\"", x)
		}
		*d = Duration(p)
	default:
		return fmt.Errorf("%s is not a duration such as \"24h\"", b)
	}
	return nil
}

// String returns the Go form, "" for zero.
func (d Duration) String() string {
	if d == 0 {
		return ""
	}
	return time.Duration(d).String()
}
