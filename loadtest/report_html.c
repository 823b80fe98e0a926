#include "report.h"
#include "flashsale/error.h"
int fs_report_write_html(const json_t *doc, const char *path, char *err, size_t errcap)
{
    (void)doc; (void)path;
    snprintf(err, errcap, "--html: not yet");
    return FS_EIO;
}
