//! A Parquet file writer on parquet-rs's column writers, with one zstd compressor for the
//! whole file.
//!
//! parquet-rs's `ArrowWriter` gives every column of every row group a zstd compressor and a
//! decompressor of its own (18 pairs, ~3.6 MB, for a leads row group) and builds them again
//! for each row group; the malloc arenas fill the holes they leave with other data, so a long
//! export ends up holding about 3 MB more than a short one. Here the column writers leave
//! pages uncompressed, and [`ZstdPages`] compresses each page as it is handed over, with the
//! file's one compressor (benches/README.md, Memory, fifth, sixth and ninth rounds).
//!
//! The files are what `ArrowWriter` writes with the same properties: the same Parquet schema
//! (from `ArrowSchemaConverter`), the Arrow schema in the footer, statistics, page index,
//! dictionaries, page and row-group sizes, and zstd on every page; only a text column without
//! statistics lacks the pages' byte counts in its offset index, which `ArrowWriter` writes
//! there and parquet-rs's column writer does not. The tables hold only flat
//! `Int64`, `Float64`, `Boolean`, `Timestamp(ms)` and `Utf8` columns; anything else is
//! refused when the writer is made.

use std::fs::File;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::Compression;
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::{ColumnWriter, ColumnWriterImpl, get_column_writer};
use parquet::data_type::{ByteArray, DataType as ParquetType};
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnPath, SchemaDescPtr};

/// The file's one compressor, shared by the page writers of every column.
type Compressor = Arc<Mutex<zstd::bulk::Compressor<'static>>>;
/// One column chunk of the open row group: page headers and compressed pages.
type Chunk = Arc<Mutex<TrackedWrite<Vec<u8>>>>;

/// Writes record batches of one Arrow schema into one Parquet file.
pub struct FileWriter {
    file: SerializedFileWriter<File>,
    schema: SchemaRef,
    descr: SchemaDescPtr,
    /// The file's properties with compression off: the column writers leave pages as they are.
    column_props: WriterPropertiesPtr,
    /// What the chunks' metadata says: the file's zstd level.
    compression: Compression,
    zstd: Compressor,
    max_rows: usize,
    max_bytes: usize,
    /// The open row group: one writer and chunk buffer per column; empty when none is open.
    group: Vec<(ColumnWriter<'static>, Chunk)>,
    group_rows: usize,
    /// Bytes of input handed to the open row group: the cap for very wide rows.
    group_bytes: usize,
    /// Buffers reused from column to column.
    defs: Vec<i16>,
    scratch: Scratch,
}

/// Non-null values of one column slice, gathered for its writer.
#[derive(Default)]
struct Scratch {
    ints: Vec<i64>,
    floats: Vec<f64>,
    bools: Vec<bool>,
    strings: Vec<ByteArray>,
}

impl FileWriter {
    /// `props` as for `ArrowWriter`; every column's compression must be the same zstd level.
    pub fn try_new(file: File, schema: SchemaRef, props: WriterProperties) -> Result<FileWriter> {
        for f in schema.fields() {
            match f.data_type() {
                DataType::Int64 | DataType::Float64 | DataType::Boolean | DataType::Utf8 => {}
                DataType::Timestamp(TimeUnit::Millisecond, _) => {}
                other => {
                    return Err(ParquetError::NYI(format!(
                        "column {} of type {other}",
                        f.name()
                    )));
                }
            }
        }
        let compression = props.compression(&ColumnPath::from(""));
        let level = match compression {
            Compression::ZSTD(level) => level.compression_level(),
            other => {
                return Err(ParquetError::General(format!(
                    "this writer compresses with zstd, not {other}"
                )));
            }
        };
        if let Some(f) = schema
            .fields()
            .iter()
            .find(|f| props.compression(&ColumnPath::from(f.name().as_str())) != compression)
        {
            return Err(ParquetError::General(format!(
                "column {} asks for another compression than the file's",
                f.name()
            )));
        }
        let descr = Arc::new(
            ArrowSchemaConverter::new()
                .with_coerce_types(props.coerce_types())
                .convert(&schema)?,
        );
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let max_bytes = props.max_row_group_bytes().unwrap_or(usize::MAX).max(1);
        let column_props = Arc::new(
            props
                .clone()
                .into_builder()
                .set_compression(Compression::UNCOMPRESSED)
                .build(),
        );
        let mut file_props = props;
        add_encoded_arrow_schema_to_metadata(&schema, &mut file_props);
        let file = SerializedFileWriter::new(file, descr.root_schema_ptr(), Arc::new(file_props))?;
        Ok(FileWriter {
            file,
            schema,
            descr,
            column_props,
            compression,
            zstd: Arc::new(Mutex::new(zstd::bulk::Compressor::new(level)?)),
            max_rows,
            max_bytes,
            group: Vec::new(),
            group_rows: 0,
            group_bytes: 0,
            defs: Vec::new(),
            scratch: Scratch::default(),
        })
    }

    /// Add the rows of `batch`. A row group is written whenever it holds the properties'
    /// maximum rows, or about their maximum bytes of input: the batch is split by its average
    /// row size, so that one batch of very wide rows does not make one huge row group.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(ParquetError::General(
                "the batch does not have the file's schema".into(),
            ));
        }
        let rows = batch.num_rows();
        let per_row = (batch.columns().iter().map(input_bytes).sum::<usize>() / rows.max(1)).max(1);
        let mut offset = 0;
        while offset < rows {
            if self.group.is_empty() {
                self.open_group();
            }
            let fit = self.max_bytes.saturating_sub(self.group_bytes) / per_row;
            let len = (self.max_rows - self.group_rows)
                .min(rows - offset)
                .min(fit.max(1));
            for i in 0..batch.num_columns() {
                let column = batch.column(i).slice(offset, len);
                self.write_column(i, &column)?;
                self.group_bytes += input_bytes(&column);
            }
            self.group_rows += len;
            offset += len;
            if self.group_rows >= self.max_rows || self.group_bytes >= self.max_bytes {
                self.close_group()?;
            }
        }
        Ok(())
    }

    /// Write the last row group and the footer; the file, flushed but not synced.
    pub fn into_inner(mut self) -> Result<File> {
        if !self.group.is_empty() {
            self.close_group()?;
        }
        let mut file = self.file.into_inner()?;
        std::io::Write::flush(&mut file)?;
        Ok(file)
    }

    fn open_group(&mut self) {
        self.group = self
            .descr
            .columns()
            .iter()
            .map(|descr| {
                let chunk: Chunk = Arc::new(Mutex::new(TrackedWrite::new(Vec::new())));
                let pages = ZstdPages {
                    chunk: chunk.clone(),
                    zstd: self.zstd.clone(),
                };
                let writer =
                    get_column_writer(descr.clone(), self.column_props.clone(), Box::new(pages));
                (writer, chunk)
            })
            .collect();
        self.group_rows = 0;
        self.group_bytes = 0;
    }

    /// Close the column writers and append their chunks, in column order, as one row group.
    fn close_group(&mut self) -> Result<()> {
        let group = std::mem::take(&mut self.group);
        let mut rg = self.file.next_row_group()?;
        for (writer, chunk) in group {
            let mut close = writer.close()?;
            let chunk = Arc::try_unwrap(chunk)
                .map_err(|_| ParquetError::General("a page writer outlived its column".into()))?
                .into_inner()
                .map_err(|_| ParquetError::General("a page writer panicked".into()))?
                .into_inner()?;
            close.metadata = close
                .metadata
                .into_builder()
                .set_compression(self.compression)
                .build()?;
            rg.append_column(&Bytes::from(chunk), close)?;
        }
        rg.close()?;
        Ok(())
    }

    /// Hand one column's slice of rows to its writer.
    fn write_column(&mut self, i: usize, column: &ArrayRef) -> Result<()> {
        // The tables' types have no logical nulls beyond their null buffers.
        let name = || self.schema.field(i).name().clone();
        let defs = if self.descr.column(i).max_def_level() > 0 {
            self.defs.clear();
            match column.nulls() {
                None => self.defs.resize(column.len(), 1),
                Some(n) => self.defs.extend(n.iter().map(i16::from)),
            }
            Some(&self.defs[..])
        } else if column.null_count() > 0 {
            return Err(ParquetError::General(format!(
                "column {} is required but holds nulls",
                name()
            )));
        } else {
            None
        };
        let s = &mut self.scratch;
        match (column.data_type(), &mut self.group[i].0) {
            (DataType::Utf8, ColumnWriter::ByteArrayColumnWriter(w)) => {
                let strings = column.as_string::<i32>();
                let offsets = strings.value_offsets();
                let values = Bytes::from(strings.values().clone());
                s.strings.clear();
                s.strings.extend(
                    (0..strings.len())
                        .filter(|&j| column.is_valid(j))
                        .map(|j| values.slice(offsets[j] as usize..offsets[j + 1] as usize))
                        .map(ByteArray::from),
                );
                w.write_batch(&s.strings, defs, None)?;
            }
            (DataType::Int64, ColumnWriter::Int64ColumnWriter(w)) => {
                let values = column.as_primitive::<Int64Type>().values();
                write_values(w, values, column, defs, &mut s.ints)?
            }
            (DataType::Timestamp(..), ColumnWriter::Int64ColumnWriter(w)) => {
                let values = column.as_primitive::<TimestampMillisecondType>().values();
                write_values(w, values, column, defs, &mut s.ints)?
            }
            (DataType::Float64, ColumnWriter::DoubleColumnWriter(w)) => {
                let values = column.as_primitive::<Float64Type>().values();
                write_values(w, values, column, defs, &mut s.floats)?
            }
            (DataType::Boolean, ColumnWriter::BoolColumnWriter(w)) => {
                let values = column.as_boolean().values();
                s.bools.clear();
                s.bools.extend(
                    (0..values.len())
                        .filter(|&j| column.is_valid(j))
                        .map(|j| values.value(j)),
                );
                w.write_batch(&s.bools, defs, None)?;
            }
            (t, _) => return Err(ParquetError::NYI(format!("column {} of type {t}", name()))),
        }
        Ok(())
    }
}

/// The bytes a column slice holds as input: its values (a string's bytes and offset).
fn input_bytes(column: &ArrayRef) -> usize {
    match column.data_type() {
        DataType::Utf8 => {
            let offsets = column.as_string::<i32>().value_offsets();
            let (first, last) = (offsets[0], offsets[offsets.len() - 1]);
            (last - first) as usize + 4 * column.len()
        }
        DataType::Boolean => column.len().div_ceil(8),
        t => t.primitive_width().unwrap_or(8) * column.len(),
    }
}

/// Write a primitive column's values (the non-null ones, gathered into `scratch` when there
/// are nulls).
fn write_values<P, T>(
    w: &mut ColumnWriterImpl<'static, P>,
    values: &[T],
    column: &ArrayRef,
    defs: Option<&[i16]>,
    scratch: &mut Vec<T>,
) -> Result<()>
where
    P: ParquetType<T = T>,
    T: Copy,
{
    if column.null_count() == 0 {
        w.write_batch(values, defs, None)?;
    } else {
        scratch.clear();
        scratch.extend(
            values
                .iter()
                .enumerate()
                .filter(|&(j, _)| column.is_valid(j))
                .map(|(_, v)| *v),
        );
        w.write_batch(scratch, defs, None)?;
    }
    Ok(())
}

/// The page writer of one column chunk: compresses each page with the file's compressor and
/// appends header and page to the chunk's buffer.
struct ZstdPages {
    chunk: Chunk,
    zstd: Compressor,
}

impl PageWriter for ZstdPages {
    fn write_page(&mut self, page: CompressedPage) -> Result<PageWriteSpec> {
        let uncompressed_size = page.uncompressed_size();
        let data = page.data();
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
        self.zstd
            .lock()
            .map_err(|_| ParquetError::General("the compressor is poisoned".into()))?
            .compress_to_buffer(data, &mut out)?;
        let buf = Bytes::from(out);
        let compressed = match page.compressed_page() {
            Page::DataPage {
                num_values,
                encoding,
                def_level_encoding,
                rep_level_encoding,
                statistics,
                ..
            } => Page::DataPage {
                buf,
                num_values: *num_values,
                encoding: *encoding,
                def_level_encoding: *def_level_encoding,
                rep_level_encoding: *rep_level_encoding,
                statistics: statistics.clone(),
            },
            Page::DictionaryPage {
                num_values,
                encoding,
                is_sorted,
                ..
            } => Page::DictionaryPage {
                buf,
                num_values: *num_values,
                encoding: *encoding,
                is_sorted: *is_sorted,
            },
            // The properties ask for version 1 data pages (the default), as ArrowWriter's.
            Page::DataPageV2 { .. } => {
                return Err(ParquetError::NYI("data pages v2".into()));
            }
        };
        let mut chunk = self
            .chunk
            .lock()
            .map_err(|_| ParquetError::General("a chunk buffer is poisoned".into()))?;
        SerializedPageWriter::new(&mut *chunk)
            .write_page(CompressedPage::new(compressed, uncompressed_size))
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::files::testutil::*;
    use super::super::parquet::{FREE_TEXT_COLUMNS, writer_properties};
    use super::*;
    use crate::schema::Table;
    use arrow_array::{
        BooleanArray, Float64Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
    };
    use arrow_schema::{Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::metadata::ParquetMetaData;
    use parquet::file::properties::EnabledStatistics;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::serialized_reader::ReadOptionsBuilder;
    use std::path::Path;

    fn own(path: &Path, schema: SchemaRef, props: WriterProperties, batches: &[RecordBatch]) {
        let mut w = FileWriter::try_new(File::create(path).unwrap(), schema, props).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.into_inner().unwrap();
    }

    fn arrow(path: &Path, schema: SchemaRef, props: WriterProperties, batches: &[RecordBatch]) {
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, Some(props)).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.into_inner().unwrap();
    }

    fn read(path: &Path) -> (SchemaRef, Vec<RecordBatch>) {
        let r = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let schema = r.schema().clone();
        (schema, r.build().unwrap().map(|b| b.unwrap()).collect())
    }

    fn metadata(path: &Path) -> Arc<ParquetMetaData> {
        let options = ReadOptionsBuilder::new().with_page_index().build();
        let r = SerializedFileReader::new_with_options(File::open(path).unwrap(), options);
        Arc::new(r.unwrap().metadata().clone())
    }

    /// Leads with bios of many lengths (a few pages per column, dictionaries on the columns
    /// that have them, falling back where they grow), in pages of 500 as the API serves them.
    fn lead_pages(n: usize) -> Vec<RecordBatch> {
        let bios: Vec<String> = (0..997)
            .map(|i| match i % 7 {
                0 => String::new(),
                1 => format!("🦀 {i} «bio» ").repeat(i % 13 + 1),
                _ => format!("bio {i}, \"quoted\" text ").repeat(i % 29 + 1),
            })
            .collect();
        let bios: Vec<&str> = bios.iter().map(String::as_str).collect();
        (0..n.div_ceil(500))
            .map(|p| {
                let rows = 500.min(n - p * 500);
                leads_batch(1 + (p * 500) as i64, rows, "job", &bios[p % 13..])
            })
            .collect()
    }

    /// Every column type the tables use, nullable and not, with nulls in runs and alone.
    fn all_types(n: usize) -> (SchemaRef, RecordBatch) {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("count", DataType::Int64, true),
            Field::new("share", DataType::Float64, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("at", ts, true),
            Field::new("text", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, false),
        ]));
        let null = |i: usize| i % 5 == 3 || (i / 50) % 4 == 1;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(Int64Array::from_iter(
                (0..n).map(|i| (!null(i)).then_some(i as i64 * -7)),
            )),
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| (!null(i + 1)).then_some(i as f64 / 3.0)),
            )),
            Arc::new(BooleanArray::from_iter(
                (0..n).map(|i| (!null(i + 2)).then_some(i % 3 == 0)),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter(
                    (0..n).map(|i| (!null(i + 3)).then_some(1_780_000_000_000 + i as i64)),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter((0..n).map(|i| {
                (!null(i + 4)).then(|| ["", "a", "ünïcode", "x,y\n\"z\""][i % 4].repeat(i % 9))
            }))),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("name {}", i * 7919 % 1000)),
            )),
        ];
        (
            schema.clone(),
            RecordBatch::try_new(schema, columns).unwrap(),
        )
    }

    /// The same file as `ArrowWriter` writes with the same properties: the same bytes count,
    /// row groups, encodings, statistics, page index and key-value metadata, and the same data.
    fn assert_same_as_arrow_writer(schema: SchemaRef, props: WriterProperties, b: &[RecordBatch]) {
        let tmp = tempfile::tempdir().unwrap();
        let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
        own(&ours, schema.clone(), props.clone(), b);
        arrow(&theirs, schema.clone(), props.clone(), b);
        let (read_schema, read_batches) = read(&ours);
        assert_eq!(read_schema, schema, "the Arrow schema comes back");
        assert_eq!(read_batches, read(&theirs).1, "the same data");
        let rows: usize = read_batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, b.iter().map(|b| b.num_rows()).sum::<usize>());

        let (m, n) = (metadata(&ours), metadata(&theirs));
        let (fm, fn_) = (m.file_metadata(), n.file_metadata());
        assert_eq!(fm.key_value_metadata(), fn_.key_value_metadata());
        assert_eq!(fm.created_by(), fn_.created_by());
        assert_eq!(fm.num_rows(), fn_.num_rows());
        assert_eq!(fm.schema_descr().columns(), fn_.schema_descr().columns());
        assert_eq!(m.num_row_groups(), n.num_row_groups());
        assert!(m.num_row_groups() > 0);
        for (rm, rn) in m.row_groups().iter().zip(n.row_groups()) {
            assert_eq!(rm.num_rows(), rn.num_rows());
            for (cm, cn) in rm.columns().iter().zip(rn.columns()) {
                let what = cm.column_path().string();
                assert!(matches!(cm.compression(), Compression::ZSTD(_)), "{what}");
                assert_eq!(cm.compression(), cn.compression(), "{what}");
                assert_eq!(
                    cm.encodings().collect::<Vec<_>>(),
                    cn.encodings().collect::<Vec<_>>(),
                    "{what}"
                );
                assert_eq!(cm.statistics(), cn.statistics(), "{what}");
                assert_eq!(cm.num_values(), cn.num_values(), "{what}");
                assert_eq!(cm.uncompressed_size(), cn.uncompressed_size(), "{what}");
                assert_eq!(
                    cm.dictionary_page_offset().is_some(),
                    cn.dictionary_page_offset().is_some(),
                    "{what}"
                );
            }
        }
        // Per column: whether the properties ask for page statistics (and so a column index).
        let page_stats: Vec<bool> = m
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| props.statistics_enabled(c.path()) == EnabledStatistics::Page)
            .collect();
        for g in 0..m.num_row_groups() {
            let (im, in_) = (m.page_index_for_row_group(g), n.page_index_for_row_group(g));
            for (c, &page_stats) in page_stats.iter().enumerate() {
                let ci = im.column_index(c);
                assert_eq!(ci.is_some(), page_stats, "page statistics of column {c}");
                assert_eq!(ci, in_.column_index(c), "page statistics of column {c}");
                let rows =
                    |o: Option<&parquet::file::page_index::offset_index::OffsetIndexMetaData>| {
                        let o = o.expect("an offset index");
                        o.page_locations()
                            .iter()
                            .map(|l| l.first_row_index)
                            .collect::<Vec<_>>()
                    };
                assert_eq!(
                    rows(im.offset_index(c)),
                    rows(in_.offset_index(c)),
                    "pages of {c}"
                );
            }
        }
        let len = |p: &Path| std::fs::metadata(p).unwrap().len();
        if page_stats.iter().all(|&p| p) {
            assert_eq!(len(&ours), len(&theirs), "the same size");
        } else {
            // Of a text column without statistics, parquet-rs's column writer leaves out each
            // page's byte count from the offset index (optional size statistics, for readers
            // that plan their memory); `ArrowWriter` records it. Nothing else differs.
            assert!(len(&ours) < len(&theirs), "smaller by the byte counts");
        }
    }

    #[test]
    fn leads_files_are_the_files_arrow_writer_writes() {
        // Three files' worth of row groups, the last one short.
        let pages = lead_pages(20_000);
        assert_same_as_arrow_writer(Table::Leads.schema(), writer_properties().unwrap(), &pages);
        // And to the byte with statistics on every column, the free-text ones too.
        let mut all = writer_properties().unwrap().into_builder();
        for col in FREE_TEXT_COLUMNS {
            all = all.set_column_statistics_enabled(ColumnPath::from(col), EnabledStatistics::Page);
        }
        assert_same_as_arrow_writer(Table::Leads.schema(), all.build(), &pages);
    }

    #[test]
    fn every_column_type_with_nulls_is_the_same_as_arrow_writer() {
        let (schema, batch) = all_types(5_000);
        let props = writer_properties()
            .unwrap()
            .into_builder()
            .set_max_row_group_row_count(Some(1_500))
            .set_data_page_size_limit(2_048)
            .build();
        let slices: Vec<RecordBatch> = (0..10).map(|i| batch.slice(i * 500, 500)).collect();
        assert_same_as_arrow_writer(schema, props, &slices);
    }

    #[test]
    fn job_records_are_the_same_as_arrow_writer() {
        let batch = crate::dest::files::job_batch(&job("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        let batch = batch.unwrap();
        let props = writer_properties().unwrap();
        assert_same_as_arrow_writer(Table::ExportJobs.schema(), props, &[batch]);
    }

    #[test]
    fn row_groups_close_at_the_row_limit_across_batches_and_near_the_byte_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let (schema, batch) = all_types(10);
        let props = |b: parquet::file::properties::WriterPropertiesBuilder| b.build();
        let by_rows = props(writer_properties().unwrap().into_builder())
            .into_builder()
            .set_max_row_group_row_count(Some(3))
            .build();
        own(
            &path,
            schema.clone(),
            by_rows,
            &[batch.slice(0, 4), batch.slice(4, 6)],
        );
        let groups = |p: &Path| -> Vec<i64> {
            metadata(p)
                .row_groups()
                .iter()
                .map(|r| r.num_rows())
                .collect()
        };
        assert_eq!(groups(&path), vec![3, 3, 3, 1]);
        assert_eq!(
            read(&path).1.iter().map(|b| b.num_rows()).sum::<usize>(),
            10
        );

        // Rows of about 100 bytes against a 1,000-byte cap: about ten rows per group, and no
        // group runs far past the cap once its average row size is known.
        let wide = leads_batch(1, 200, "job", &[&"x".repeat(60)]);
        let by_bytes = writer_properties()
            .unwrap()
            .into_builder()
            .set_max_row_group_bytes(Some(1_000))
            .build();
        own(&path, Table::Leads.schema(), by_bytes, &[wide]);
        let sizes = groups(&path);
        assert_eq!(sizes.iter().sum::<i64>(), 200);
        assert!(sizes.len() >= 10, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= 20), "{sizes:?}");
    }

    #[test]
    fn what_the_writer_cannot_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = || File::create(tmp.path().join("f")).unwrap();
        let props = writer_properties().unwrap();
        let int32 = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, true)]));
        let err = FileWriter::try_new(file(), int32.clone(), props.clone()).err();
        assert!(err.unwrap().to_string().contains("column n of type Int32"));

        let snappy = props
            .clone()
            .into_builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let err = FileWriter::try_new(file(), Table::Leads.schema(), snappy).err();
        assert!(err.unwrap().to_string().contains("zstd, not SNAPPY"));

        let (_, batch) = all_types(4);
        let mut w = FileWriter::try_new(file(), Table::Leads.schema(), props.clone()).unwrap();
        let err = w.write(&batch).unwrap_err().to_string();
        assert!(err.contains("the file's schema"), "{err}");
        let ints = RecordBatch::try_new(int32, vec![Arc::new(Int32Array::from(vec![1]))]);
        assert!(w.write(&ints.unwrap()).is_err());
    }
}
