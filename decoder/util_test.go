package decoder

import (
	"fmt"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func lsnOf(v uint64) lsn.LSN { return lsn.LSN(v) }
