/*
 * catalog_internal.h
 *		What the catalog's files share and nothing else includes: reading
 *		the values of a CatResult, and the row readers more than one table
 *		family needs.
 */
#ifndef DBORCH_CATALOG_INTERNAL_H
#define DBORCH_CATALOG_INTERNAL_H

#include "catalog.h"

/* A column of a result row: a whole number (0 when NULL), a copied string (NULL when NULL). */
extern int64 cat_int64(CatResult *res, int row, const char *column);
extern char *cat_str(CatResult *res, int row, const char *column);

/* The id column of a result as a list of int64 *. */
extern List *ids_from(CatResult *r);

#endif							/* DBORCH_CATALOG_INTERNAL_H */
