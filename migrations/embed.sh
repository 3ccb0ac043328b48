#!/bin/sh
# Turn migrations/NNN_*.sql into a C array, in order, at build time.
# Usage: migrations_gen.sh FILE... > migrations.c
set -e
echo '/* Generated from the migrations/NNN_name.sql files by migrations/embed.sh. Do not edit. */'
echo '#include <stddef.h>'
echo 'const char *const db_migrations[] = {'
for f in "$@"; do
    echo "    /* $f */"
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$/\\n"/' "$f"
    echo '    ,'
done
echo '    NULL'
echo '};'
