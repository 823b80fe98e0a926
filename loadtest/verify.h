#ifndef FS_LOAD_VERIFY_H
#define FS_LOAD_VERIFY_H
#endif
