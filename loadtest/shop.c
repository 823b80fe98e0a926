#include "shop.h"
#include "flashsale/error.h"
#include <stdio.h>
int fs_shop_run(const fs_shop_opts_t *o, json_t **doc, int *passed, char *err, size_t errcap)
{
    (void)o; *doc = NULL; *passed = 0;
    snprintf(err, errcap, "campaign mode: not yet");
    return FS_EINVAL;
}
