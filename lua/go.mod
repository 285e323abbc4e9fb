module github.com/heraldpush/herald/lua

go 1.26.0
